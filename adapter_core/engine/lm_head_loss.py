"""Cross-entropy through an LM head, a chunk of tokens at a time, so that the whole logits never exist.

A causal LM's loss would hold (tokens x vocabulary) logits, their log-softmax and its gradient at once:
three float32 tensors of 400 MB each for 2,048 tokens of SmolLM2 (49,152-token vocabulary), 1 GB each
for Llama 3's 128k. Here each chunk's logits become their own gradient (softmax minus one-hot) in
place, and the gradients for the hidden states (and for the head, when it trains) are taken in the
forward pass, as Liger's fused linear cross-entropy does. The matrix multiplies are the same as
unfused; only one chunk of logits is alive at a time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

# Logits per chunk: 16M floats (64 MiB; 341 tokens of SmolLM2). Each chunk reads the head's weights
# again, so much smaller chunks cost time on a CPU; at this size the loss takes the same time as unfused.
CHUNK_ELEMENTS = 2**24


def lm_head_loss(
    hidden: torch.Tensor, head: nn.Linear, targets: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Mean cross-entropy of `head(hidden)` against `targets`, for 2-D `hidden` (tokens x width) and
    1-D `targets`, every one a real class (ignored positions are to be dropped beforehand)."""
    chunk = chunk or max(1, CHUNK_ELEMENTS // head.weight.shape[0])
    if not torch.is_grad_enabled():
        return _chunks(hidden, head.weight, head.bias, targets, chunk, (False, False, False))[0]
    return _LMHeadLoss.apply(hidden, head.weight, head.bias, targets, chunk)


class _LMHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        loss, *grads = _chunks(hidden, weight, bias, targets, chunk, ctx.needs_input_grad[:3])
        ctx.save_for_backward(*grads)
        ctx.dtypes = hidden.dtype, weight.dtype, None if bias is None else bias.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grads = zip(ctx.saved_tensors, ctx.dtypes, strict=True)
        return *(None if g is None else (g * grad_loss).to(dtype) for g, dtype in grads), None, None


def _chunks(hidden, weight, bias, targets, chunk, needs):
    """(mean loss, and d loss / d hidden, weight, bias in float32 where `needs` says so, else None)."""
    need_h, need_w, need_b = needs
    n = hidden.shape[0]
    f32 = {"dtype": torch.float32, "device": hidden.device}
    grad_h = torch.empty(hidden.shape, **f32) if need_h else None
    grad_w = torch.zeros(weight.shape, **f32) if need_w else None
    grad_b = torch.zeros(bias.shape, **f32) if need_b else None
    total = torch.zeros((), **f32)
    for start in range(0, n, chunk):
        h, t = hidden[start : start + chunk], targets[start : start + chunk]
        logits = F.linear(h, weight, bias).float()
        lse = logits.logsumexp(-1)
        total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
        if not any(needs):
            continue
        # The gradient of the summed loss for these logits: softmax minus one-hot, in their place.
        g = logits.sub_(lse[:, None]).exp_()
        g[torch.arange(len(t), device=g.device), t] -= 1
        g = g.to(weight.dtype)  # autocast, where on, picks the GEMMs' dtype itself
        if need_h:
            grad_h[start : start + chunk] = g @ weight
        if need_w:
            grad_w += g.T @ h
        if need_b:
            grad_b += g.sum(0)
    return total / n, *(None if grad is None else grad / n for grad in (grad_h, grad_w, grad_b))
