"""The response-only LM loss: the model's own loss and gradients, with the head run on labelled tokens only."""

import pytest
import torch
from conftest import tiny_model

from adapter_core import AdapterConfig, add_adapter
from adapter_core.engine import losses
from adapter_core.engine.batches import IGNORE
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
    head_rows = []
    head = model.get_output_embeddings()
    head.register_forward_hook(lambda m, args, out: head_rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))

    fast, fast_grads = loss_and_grads(model, response_loss)
    own, own_grads = loss_and_grads(model, models_own_loss)

    _, _, labels = instruction_batch()
    assert head_rows == [int((labels[:, 1:] != IGNORE).sum()), labels.numel()]  # labelled tokens only
    torch.testing.assert_close(fast, own, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == own_grads.keys() and len(fast_grads) > 0
    for name in own_grads:
        torch.testing.assert_close(fast_grads[name], own_grads[name], rtol=1e-4, atol=1e-6, msg=name)


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
