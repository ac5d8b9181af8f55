"""The response-only LM loss: the model's own loss and gradients, with the head run on labelled tokens only."""

import pytest
import torch
from helpers import tiny_model
from torch.utils._python_dispatch import TorchDispatchMode

from adapter_core import AdapterConfig, add_adapter
from adapter_core.engine import losses
from adapter_core.engine.batches import IGNORE
from adapter_core.engine.lm_head_loss import lm_head_loss
from adapter_core.engine.losses import PLAIN_LM_HEAD, response_loss, task_loss
from adapter_core.selection import use_adapter


def instruction_batch():
    """Three right-padded rows whose prompts (no loss) and responses have different lengths."""
    torch.manual_seed(2)
    ids = torch.randint(3, 96, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 5:] = 0
    labels = ids.clone()
    labels[mask == 0] = IGNORE
    labels[0, :6], labels[1, :3], labels[2, :2] = IGNORE, IGNORE, IGNORE
    return ids, mask, labels


def loss_and_grads(model, loss_fn):
    ids, mask, labels = instruction_batch()
    model.zero_grad(set_to_none=True)
    with use_adapter(model, "a"):
        loss = loss_fn(model, ids, mask, labels)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def models_own_loss(model, ids, mask, labels):
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2", "gpt_neox", "phi", "opt"])
def test_response_loss_equals_the_models_own_loss_and_gradients(model_type, monkeypatch):
    model = tiny_model(model_type)
    add_adapter(model, "a", AdapterConfig(bottleneck=8, init="normal"), task="instruction")
    # A non-zero W_up, so the gradients reach W_down too.
    torch.nn.init.normal_(next(p for n, p in model.named_parameters() if n.endswith("up.weight")), std=0.1)
    model.eval()  # no dropout, so two passes see the same function
    head_rows, chunked_rows = [], []  # tokens through the head module, and through the chunked loss
    model.get_output_embeddings().register_forward_hook(lambda m, args, out: head_rows.append(args[0][..., 0].numel()))
    chunked = losses.lm_head_loss
    monkeypatch.setattr(losses, "lm_head_loss", lambda h, *a: chunked_rows.append(h.shape[0]) or chunked(h, *a))

    fast, fast_grads = loss_and_grads(model, response_loss)
    own, own_grads = loss_and_grads(model, models_own_loss)

    _, _, labels = instruction_batch()
    assert chunked_rows == [int((labels[:, 1:] != IGNORE).sum())]  # labelled tokens only, a chunk at a time
    assert head_rows == [labels.numel()]  # the model's own loss: every token
    torch.testing.assert_close(fast, own, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == own_grads.keys() and len(fast_grads) > 0
    for name in own_grads:
        torch.testing.assert_close(fast_grads[name], own_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("model_type", ["gpt2", "phi"])  # GPT-2 ties its head to the embeddings; Phi's has a bias
def test_response_loss_in_full_fine_tuning_equals_the_models_own_gradients(model_type):
    model = tiny_model(model_type)
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    model.requires_grad_(True)
    head = model.get_output_embeddings()
    assert head.weight.requires_grad and (model_type != "phi" or head.bias is not None)

    fast, fast_grads = loss_and_grads(model, response_loss)
    own, own_grads = loss_and_grads(model, models_own_loss)

    torch.testing.assert_close(fast, own, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == own_grads.keys()
    for name in own_grads:
        torch.testing.assert_close(fast_grads[name], own_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
@pytest.mark.parametrize("trainable_head", [False, True])
def test_lm_head_loss_equals_cross_entropy_and_its_gradients(chunk, trainable_head):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50).requires_grad_(trainable_head)
    hidden = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 50, (40,))

    loss = lm_head_loss(hidden, head, targets, chunk)
    grads = torch.autograd.grad(2 * loss, [hidden, *(head.parameters() if trainable_head else [])])
    ref = torch.nn.functional.cross_entropy(head(hidden), targets)
    ref_grads = torch.autograd.grad(2 * ref, [hidden, *(head.parameters() if trainable_head else [])])

    torch.testing.assert_close(loss, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        torch.testing.assert_close(lm_head_loss(hidden, head, targets, chunk), ref)


def test_lm_head_loss_under_bf16_autocast_matches_cross_entropy_and_keeps_float32_gradients():
    """Mixed precision, as accelerate runs it on a GPU: the GEMMs in bf16, the softmax and grads in float32."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50)
    hidden = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 50, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = lm_head_loss(hidden, head, targets, 7)
        ref = torch.nn.functional.cross_entropy(head(hidden).float(), targets)
    grads = torch.autograd.grad(loss, [hidden, head.weight, head.bias])
    ref_grads = torch.autograd.grad(ref, [hidden, head.weight, head.bias])

    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=1e-3, atol=1e-3)
    for got, want in zip(grads, ref_grads, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)


def test_lm_head_loss_never_holds_the_whole_logits():
    """No tensor as large as (tokens x vocabulary) is made, forward or backward: one chunk's at most."""
    tokens, vocab, width, chunk = 64, 1000, 4, 8  # width < chunk: the head's weights are smaller than a chunk

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else [out]:
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    head = torch.nn.Linear(width, vocab, bias=False).requires_grad_(False)
    hidden = torch.randn(tokens, width, requires_grad=True)
    targets = torch.randint(0, vocab, (tokens,))
    with Largest():
        lm_head_loss(hidden, head, targets, chunk).backward()
    assert 0 < Largest.numel <= chunk * vocab < tokens * vocab


def test_models_that_transform_their_logits_take_their_own_loss():
    model = tiny_model("gemma2")
    model.config.final_logit_softcapping = 0.5  # strong enough that head-only logits would differ
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    assert "gemma2" not in PLAIN_LM_HEAD
    ids, mask, labels = instruction_batch()
    with torch.no_grad(), use_adapter(model, "a"):
        own = models_own_loss(model, ids, mask, labels)
        plain = torch.nn.functional.cross_entropy(
            model.get_output_embeddings()(losses.backbone_hidden(model, ids, mask)[:, :-1]).flatten(0, 1),
            labels[:, 1:].flatten(),
        )
        assert not torch.allclose(own, plain, rtol=1e-3)  # the shortcut would be wrong here...
        torch.testing.assert_close(response_loss(model, ids, mask, labels), own)  # ...so it is not taken


def test_task_loss_counts_the_labelled_tokens():
    model = tiny_model("llama")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    ids, mask, labels = instruction_batch()
    _, count, logits = task_loss(
        model, "a", "instruction", {"input_ids": ids, "attention_mask": mask, "labels": labels}
    )
    assert count == int((labels[:, 1:] != IGNORE).sum()) == 11 and logits is None
