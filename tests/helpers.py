"""What the tests share: the repository's paths, waiting on a condition, free ports, tiny models built from a
config, a short training config and the CLI as a subprocess. Fixtures stay in conftest.py; this module holds
plain functions, imported by name (`from helpers import quick, wait_for`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
ROUTING = str(SAMPLES / "support_routing.csv")
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30, every: float = 0.05, what: str = "condition") -> T:
    """Poll `check()` until it returns something truthy, and return that: tests wait on conditions, never on
    fixed sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def raw_post(url: str, path: str, body: dict, headers: dict | None = None) -> socket.socket:
    """POST `body` as JSON over a bare socket and return it unread: the caller hangs up by closing it, at
    whatever moment a test needs (an HTTP client would wait for the response first)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    data = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock = socket.create_connection((host, int(port)))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    return sock


def free_port() -> int:
    """A local port nobody listens on now, so that test modules can serve side by side (pytest-xdist)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quick(**overrides):
    """A MiniLM run on the routing sample that takes seconds: two steps of short rows."""
    from adapter_core.engine.config import TrainConfig

    settings = dict(base="minilm", data=ROUTING, name="routing", max_steps=2, batch_size=16, max_length=32)
    return TrainConfig.from_dict({**settings, **overrides})  # from_dict: the legacy flat `dropout` goes into `adapter`


def held_train(
    config, out_dir, on_event=lambda e: None, should_stop=lambda: False, base=None, resume=False, lease=None
):
    """Stands in for the engine's `train`: holds the trainer until the run is stopped (a run that stays
    active as long as a test wants). Patch it over `adapter_core.engine.jobs.train`."""
    from adapter_core.engine.train import TrainResult

    while not should_stop():
        time.sleep(0.02)
    return TrainResult("stopped", Path(out_dir) / "adapter", {}, 0, 0.0, 0.0)


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m adapter_core ARGS` in a subprocess from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "adapter_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=ROOT,
    )


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


def tiny_llama_with_adapters(tokenizer, scale: float, names=("a", "b")):
    """A tiny Llama with instruction adapters `names`, each with its own seeded random weights × `scale`."""
    from adapter_core import AdapterConfig, adapter_parameters, add_adapter

    model = tiny_llama(tokenizer, hidden=32, layers=2)
    for seed, name in enumerate(names):
        add_adapter(model, name, AdapterConfig(bottleneck=8), task="instruction")
        g = torch.Generator().manual_seed(seed + 10)
        with torch.no_grad():
            for p in adapter_parameters(model, name).values():
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model
