import os
from pathlib import Path

import pytest
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
# The dequantised SmolLM2 is cached across test runs; each test that needs a clean data dir sets its own home.
os.environ.setdefault("ADAPTER_STUDIO_CACHE", str(ROOT / ".cache" / "models"))
os.environ.setdefault("ADAPTER_STUDIO_HOME", str(ROOT / ".cache" / "home"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    n_embd=32,
    n_layer=2,
    n_head=4,
    d_model=32,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    d_kv=8,
    dim=32,
    hidden_dim=64,
    n_layers=2,
    n_heads=4,
    ffn_dim=64,
    word_embed_proj_dim=32,
    max_position_embeddings=64,
    n_positions=64,
    pad_token_id=0,
)


def tiny_model(model_type: str, seed: int = 0, head: str = "lm") -> torch.nn.Module:
    """A randomly initialised model of `model_type` small enough for unit tests."""
    config = transformers.AutoConfig.for_model(model_type)
    for key, value in TINY.items():
        if hasattr(config, key):
            setattr(config, key, value)
    torch.manual_seed(seed)
    if head == "lm" and config.is_encoder_decoder:
        cls = transformers.AutoModelForSeq2SeqLM
    elif head == "lm" and type(config) in transformers.AutoModelForCausalLM._model_mapping:
        cls = transformers.AutoModelForCausalLM
    else:
        cls = transformers.AutoModel
    return cls.from_config(config).eval()


def tiny_llama(tokenizer, hidden: int = 16, layers: int = 1, **config) -> transformers.LlamaForCausalLM:
    """A tiny random Llama (seed 0, eval mode) over a real tokenizer's vocabulary, for generation tests."""
    heads = hidden // 8
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def run(model, ids, mask=None):
    """The model's main output tensor for a batch (logits or the last hidden state)."""
    mask = torch.ones_like(ids) if mask is None else mask
    kwargs = {"decoder_input_ids": ids} if model.config.is_encoder_decoder else {}
    out = model(input_ids=ids, attention_mask=mask, **kwargs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.fixture
def ids():
    torch.manual_seed(1)
    return torch.randint(3, 96, (3, 9))
