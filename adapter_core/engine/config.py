"""What a run is given (`TrainConfig`, holding the adapter's own `AdapterConfig`) and what it reports (`Event`)."""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import AdapterConfig, check_known_fields
from ..errors import AdapterError
from .plan import DEFAULT_PRESET, PRESETS
from .tracking import require_tracker

# Keys that TrainConfig once held itself and now live in `adapter`: old run folders and saved wizard
# states still read.
LEGACY_ADAPTER_KEYS = ("bottleneck", "placement", "activation", "dropout")
MAX_SAMPLE_PROMPTS = 10


@dataclass
class TrainConfig:
    """Everything one run needs. The defaults reach >91% on BANKING77 with MiniLM in minutes on a CPU.

    `batch_size`, `epochs` and `lr` default to None, "auto": `train` chooses them once the data is
    loaded (`engine/plan.py`: enough optimizer steps for a small file, batch 32 for a large one), by the
    recipe of `preset`. A value given always wins. `adapter` is the adapter's shape and placement, every
    option of `AdapterConfig`.
    """

    base: str = "minilm"
    data: str = ""
    task: str = "classification"
    name: str = "adapter"
    columns: dict[str, str] = field(default_factory=dict)
    val_data: str | None = None
    val_fraction: float = 0.1
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    base_dropout: bool = False  # False: the frozen base runs in eval mode (True: its dropout on, as in PEFT)
    pooling: str | None = None
    epochs: float | None = None  # None: auto (sized in optimizer steps, see engine/plan.py)
    lr: float | None = None  # None: auto (the task's rate for the preset: 2e-3 classification, 1e-3 instruction)
    batch_size: int | None = None  # None: auto (32, 16 or 8 by the file's size)
    preset: str = DEFAULT_PRESET  # the recipe auto settings follow: Quick look, Balanced or Capacity
    grad_accum: int = 1
    max_length: int = 128
    seed: int = 42
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every: int = 0  # steps between evaluations; 0: twice per epoch, at most about ten times a run
    max_steps: int = 0  # stop after this many steps (0: no limit); for quick tries
    max_seconds: float = 0  # time budget for training, evaluation excluded (0: none)
    mode: str = "adapter"  # adapter | head (head only) | full (full fine-tuning, for comparisons)
    precision: str = "auto"  # auto | no | bf16 | fp16
    device: str = "auto"  # auto (a GPU when there is one) | cpu
    early_stopping_patience: int = 0  # evaluations without a better validation metric before stopping (0: off)
    report_to: str = "none"  # none | tensorboard | mlflow | trackio (through accelerate's trackers)
    init_from: str | None = None  # an adapter (or run) folder to continue training on the new data
    sample_prompts: int = 3  # instruction runs: validation prompts answered at each evaluation

    def __post_init__(self) -> None:
        if isinstance(self.adapter, dict):  # a config read back from JSON
            self.adapter = _adapter_from_dict(self.adapter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from its `to_dict` form. Unknown keys are an error, as in `AdapterConfig.from_dict`;
        the legacy flat adapter keys (bottleneck, placement, activation, dropout) go into `adapter`."""
        if not isinstance(data, dict):
            raise AdapterError(f"A training config must be an object of settings; got {type(data).__name__}.")
        data = dict(data)
        adapter = data.pop("adapter", None) or {}
        if isinstance(adapter, AdapterConfig):
            adapter = adapter.to_dict()
        if not isinstance(adapter, dict):
            raise AdapterError(f"adapter must be an object of adapter settings; got {adapter!r}.")
        adapter = {**{k: data.pop(k) for k in LEGACY_ADAPTER_KEYS if k in data}, **adapter}
        check_known_fields(cls, data, "training config")
        return cls(**data, adapter=_adapter_from_dict(adapter))

    def check(self) -> None:
        """Refuse settings that cannot train, in words; quotas are the caller's business (see studio/policy.py)."""
        for key in ("base", "data", "task", "name", "mode", "precision", "preset", "report_to"):
            if not isinstance(getattr(self, key), str):
                raise AdapterError(f"{key} must be text; got {getattr(self, key)!r}.")
        _choice("task", self.task, ("classification", "instruction"))
        _choice("mode", self.mode, ("adapter", "head", "full"))
        _choice("device", self.device, ("auto", "cpu"))
        _choice("preset", self.preset, tuple(PRESETS))
        _choice("precision", self.precision, ("auto", "no", "bf16", "fp16"))
        if not isinstance(self.columns, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.columns.items()
        ):
            raise AdapterError(f"columns must map roles to column names; got {self.columns!r}.")
        self._check_numbers()
        if self.mode == "head" and self.task != "classification":
            raise AdapterError("mode 'head' trains a classification head; instruction tuning has none.")
        if self.max_length < 8:
            raise AdapterError(f"max_length {self.max_length} is too short to hold a text; use 32 or more.")
        if not isinstance(self.adapter, AdapterConfig):
            raise AdapterError(f"adapter must be an AdapterConfig; got {type(self.adapter).__name__}.")
        _adapter_from_dict(self.adapter.to_dict())  # validated again: a config may be changed after it is made
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise AdapterError(f"init_from must name an adapter folder; got {self.init_from!r}.")
        if self.init_from and self.mode == "full":
            raise AdapterError("init_from continues training an adapter; a full fine-tune trains the base instead.")
        require_tracker(self.report_to)

    def _check_numbers(self) -> None:
        for key in ("batch_size", "grad_accum", "max_length"):
            if key != "batch_size" or self.batch_size is not None:  # None: auto
                _whole(key, getattr(self, key), low=1)
        for key in ("eval_every", "max_steps", "early_stopping_patience"):
            _whole(key, getattr(self, key), low=0)
        _whole("sample_prompts", self.sample_prompts, low=0, high=MAX_SAMPLE_PROMPTS)
        _whole("seed", self.seed, low=0, high=2**32 - 1)
        for key in ("epochs", "lr", "max_grad_norm"):
            if key != "max_grad_norm" and getattr(self, key) is None:  # auto
                continue
            if not _real(getattr(self, key)) > 0:
                raise AdapterError(f"{key} must be a positive number; got {getattr(self, key)!r}.")
        for key in ("max_seconds", "weight_decay"):
            if not _real(getattr(self, key)) >= 0:
                raise AdapterError(f"{key} must be zero or more; got {getattr(self, key)!r}.")
        if not 0 <= _real(self.warmup_ratio) < 1:
            raise AdapterError(f"warmup_ratio must be at least 0 and below 1; got {self.warmup_ratio!r}.")
        if not 0 < _real(self.val_fraction) < 0.5:
            raise AdapterError(f"val_fraction must be between 0 and 0.5; got {self.val_fraction!r}.")


def _adapter_from_dict(data: dict[str, Any]) -> AdapterConfig:
    """`AdapterConfig.from_dict`, with a wrong type in a field (leave_out: "x") said in words too."""
    try:
        return AdapterConfig.from_dict(data)
    except AdapterError:
        raise
    except (TypeError, ValueError) as e:
        raise AdapterError(f"The adapter settings are not valid ({e}); see AdapterConfig for each field.") from None


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        names = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise AdapterError(f"{key} must be {names}; got {value!r}.")


def _whole(key: str, value: Any, low: int, high: int | None = None) -> None:
    """`value` must be a whole number (not a float, not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AdapterError(f"{key} must be a whole number; got {value!r}.")
    if value < low or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"from {low} to {high:,}"
        raise AdapterError(f"{key} must be {span}; got {value!r}.")


def _real(value: Any) -> float:
    """`value` as a float when it is a finite number; NaN otherwise, which fails every range check."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


@dataclass
class Event:
    """One thing that happened in a run, as the UI, the CLI and metrics.jsonl see it."""

    kind: str  # status | data | step | eval | warning | done
    time: float = field(default_factory=time.time)
    status: str | None = None  # loading | training | completed | stopped | failed
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    lr: float | None = None
    examples_per_sec: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    metrics: dict[str, float] | None = None
    message: str | None = None
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
