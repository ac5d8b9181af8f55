"""What a run is given (`TrainConfig`, holding the adapter's own `AdapterConfig`) and what it reports (`Event`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..config import AdapterConfig, check_known_fields
from ..errors import AdapterError
from ..heads import POOLINGS
from ..inject import TASKS
from ..out_of_scope import DEFAULT_SCORE, FALSE_REJECTION, MAX_FALSE_REJECTION, SCORES
from ..paths import path_tail
from ..settings import NOT_NEGATIVE, POSITIVE, Bounds, Setting, check_value, setting, settings_of
from .plan import DEFAULT_PRESET, PRESETS, Plan, plan_training, preset_of
from .tracking import REPORT_TO, require_tracker

# Keys that TrainConfig once held itself and now live in `adapter`: old run folders and saved wizard
# states still read.
LEGACY_ADAPTER_KEYS = ("bottleneck", "placement", "activation", "dropout")
MAX_SAMPLE_PROMPTS = 10
MAX_SCORE_PAIRS = 256
MAX_PATIENCE = 100  # evaluations without improvement: more is no early stopping at all
COLUMN_ROLES = ("text", "label", "instruction", "response", "input", "system")  # what --<role>-column maps


@dataclass
class TrainConfig:
    """Everything one run needs. The defaults reach >91% on BANKING77 with MiniLM in minutes on a CPU.

    `batch_size`, `epochs` and `lr` default to None, "auto": `train` chooses them once the data is
    loaded (`engine/plan.py`: enough optimizer steps for a small file, batch 32 for a large one), by the
    recipe of `preset`. A value given always wins. `adapter` is the adapter's shape and placement, every
    option of `AdapterConfig`. Each other field is a setting (`adapter_core/settings.py`), declared here
    once for the CLI, the studio and the checks below.
    """

    base: str = setting(
        "minilm", "The frozen base model: a catalog name (minilm, smollm2-135m-instruct), a Hub id or a local folder"
    )
    data: str = setting(
        "", "The training file: .csv, .tsv or .jsonl with a header row, or a Hub dataset: hf://datasets/OWNER/NAME"
    )
    data_config: str | None = setting(
        None, "A Hub dataset's configuration (subset); default: its default one", label="Configuration"
    )
    data_split: str | None = setting(
        None,
        "A Hub dataset's split to train on (default: train); its validation split, when it has one, validates",
        label="Split",
    )
    task: str = setting(
        "classification", "classification: (text, label) columns; instruction: (instruction, response)", choices=TASKS
    )
    name: str = setting("adapter", "The adapter's name (default: the run folder's name)", label="Adapter name")
    columns: dict[str, str] = setting(
        factory=dict, help="The file's column holding each role (found by its name when not given)", flag=""
    )
    val_data: str | None = setting(
        None, "A separate validation file (default: a share of the training file is held out)"
    )
    val_fraction: float = setting(
        0.1, "The share of the training file held out for validation", bounds=Bounds(0, 0.5, True, True)
    )
    oos_data: str | None = setting(
        None,
        "Classification: a file of out-of-scope example messages (a text column; any label is ignored). They "
        "pick the router's out-of-scope score and the run reports what share of them it catches",
        label="Out-of-scope examples",
    )
    oos_score: str = setting(
        DEFAULT_SCORE,
        "Classification: how the router scores a message as out of scope (energy_knn: energy and knn together; "
        "energy: how low all the label scores are together; msp: how low the top probability is; mahalanobis: "
        "distance to the nearest class in the adapter's features; relative_mahalanobis: that, less the distance "
        "to all training rows; knn: to the nearest training row; fused: relative_mahalanobis and energy together)",
        label="Out-of-scope score",
        choices=SCORES,
        sweep="no",
    )
    false_rejection: float = setting(
        FALSE_REJECTION,
        "Classification: the share of in-scope validation messages the out-of-scope threshold may send to the fallback",
        label="In-scope false rejection",
        bounds=Bounds(0, MAX_FALSE_REJECTION),
        sweep="no",
    )
    adapter: AdapterConfig = field(default_factory=AdapterConfig)  # its fields are settings too
    base_dropout: bool = setting(
        False,
        "Keep the frozen base's dropout active while training (off: the base runs in eval mode, a cheaper step)",
    )
    pooling: str | None = setting(
        None,
        "How a classifier pools its tokens into one vector (default: cls, the first token, for encoders, or mean, "
        "the average of all tokens, when only the head trains; last, the last token, for decoders)",
        choices=POOLINGS,
    )
    epochs: float | None = setting(
        None,
        "Passes over the training rows; auto: enough for the preset's optimizer steps on a small file, 4 on a "
        "large one (cut to the preset's time budget on a CPU)",
        auto="plan",
        typical=4.0,
        bounds=POSITIVE,
        limit="max_epochs",
        studio="main",
    )
    lr: float | None = setting(
        None,
        "Step size of each update; auto: 2e-3 for classification, 1e-3 for instruction (x1.5 Quick look, "
        "x0.5 Capacity)",
        label="Learning rate",
        auto="plan",
        typical=2e-3,
        bounds=POSITIVE,
        sweep="vary",
        studio="main",
    )
    batch_size: int | None = setting(
        None,
        "Rows per optimizer step (per device); auto: 32, or 16 or 8 when a small file needs more steps",
        auto="plan",
        typical=32,
        bounds=Bounds(1),
        limit="max_batch_size",
        studio="main",
    )
    preset: str = setting(
        DEFAULT_PRESET,
        "The recipe auto settings follow: " + " · ".join(f"{p.label}: {p.description}" for p in PRESETS.values()),
        choices=tuple(PRESETS),
        parse=preset_of,
        studio="main",
    )
    grad_accum: int = setting(1, "Batches whose gradients add up to one optimizer step", bounds=Bounds(1))
    max_length: int = setting(
        128,
        "Tokens per example; longer examples are cut (the data summary says how many)",
        label="Max length (tokens)",
        bounds=Bounds(1),
        limit="max_length",
        studio="main",
    )
    seed: int = setting(
        42,
        "The same seed gives the same run: the same data order and starting weights",
        label="Random seed",
        bounds=Bounds(0, 2**32 - 1),
        studio="advanced",
    )
    warmup_ratio: float = setting(
        0.06,
        "The share of the run's optimizer steps over which the learning rate climbs from 0 to its full value",
        bounds=Bounds(0, 1, high_open=True),
        studio="advanced",
    )
    weight_decay: float = setting(
        0.01,
        "AdamW's weight decay: how hard each step pulls the trained weights towards 0",
        bounds=NOT_NEGATIVE,
        studio="advanced",
    )
    max_grad_norm: float = setting(1.0, "", bounds=POSITIVE, flag="")
    eval_every: int = setting(
        0, "Optimizer steps between evaluations (0: two per epoch, at most about ten a run)", bounds=Bounds(0)
    )
    max_steps: int = setting(
        0, "Stop after this many optimizer steps (0: no limit)", bounds=Bounds(0), limit="max_steps"
    )
    max_seconds: float = setting(
        0, "Training time budget in seconds, evaluation excluded (0: none)", bounds=NOT_NEGATIVE
    )
    mode: str = setting(
        "adapter",
        "What learns: the adapter (and a head for classification) on the frozen base; the head only, the floor "
        "an adapter must beat; or every weight of the base, the baseline adapters are measured against (not "
        "kept as an adapter)",
        label="What trains",
        choices=("adapter", "head", "full"),
        labels={"adapter": "Adapter", "head": "Head only", "full": "Full fine-tuning"},
        sweep="no",
        studio="main",
    )
    precision: str = setting(
        "auto", "Number format of training: auto (bf16 or fp16 where the GPU has it), no (fp32), bf16 or fp16",
        choices=("auto", "no", "bf16", "fp16"),
    )  # fmt: skip
    device: str = setting("auto", "Where training runs; auto: a GPU when there is one", choices=("auto", "cpu"))
    early_stopping_patience: int = setting(
        0,
        "Stop after this many evaluations without a better validation score (0: never); the best checkpoint is kept",
        label="Stop early after N evaluations without progress",
        key="patience",
        bounds=Bounds(0, MAX_PATIENCE),
        sweep="no",
        studio="advanced",
    )
    report_to: str = setting(
        "none",
        "Also log the run's metrics to an experiment tracker, beside the run's own log: TensorBoard writes its "
        "files into the run's folder (tracking/), which TensorBoard can open; MLflow and Trackio log to their own "
        "local stores and need their packages",
        label="Experiment tracker",
        choices=REPORT_TO,
        labels={"none": "None", "tensorboard": "TensorBoard", "mlflow": "MLflow", "trackio": "Trackio"},
        public_choices=("none", "tensorboard"),  # mlflow and trackio would write to a server or service of ours
        studio="advanced",
    )
    init_from: str | None = setting(
        None,
        "An adapter (or run) to go on training on this data; it keeps its own size and head (empty: a fresh one)",
        label="Continue training from",
        key="continue_from",
        sweep="no",
        studio="advanced",
    )
    sample_prompts: int = setting(
        3,
        "Instruction runs: validation prompts answered at each evaluation, beside the base's answers",
        bounds=Bounds(0, MAX_SAMPLE_PROMPTS),
    )
    score_pairs: int = setting(
        8,
        "Instruction runs: validation pairs answered at the end by the adapter and by the bare base, and scored "
        "(ROUGE-L, chrF, exact match, loops, cut answers); 0: none",
        bounds=Bounds(0, MAX_SCORE_PAIRS),
    )

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

    @classmethod
    def from_settings(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from settings by name, the adapter's among them (as the CLI and the studio hold
        them); a setting not given keeps its default."""
        adapter = {k: v for k, v in values.items() if k in settings_of(AdapterConfig, "adapter")}
        return cls.from_dict({**{k: v for k, v in values.items() if k not in adapter}, "adapter": adapter})

    def plan(
        self,
        rows: int,
        device: str,
        tokens_per_example: float | None = None,
        base_params: int | None = None,
        processes: int = 1,
    ) -> Plan:
        """The plan of this run on `rows` training rows: its given settings kept, its auto ones chosen, and
        its step and time caps applied. The one mapping from a run's settings to its plan, for the run itself
        and for every preview of it (the studio's summary before Start)."""
        return plan_training(
            rows,
            self.task,
            self.preset,
            base=self.base,
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr=self.lr,
            device=device,
            tokens_per_example=tokens_per_example,
            base_params=base_params,
            grad_accum=self.grad_accum,
            processes=processes,
            max_steps=self.max_steps,
            max_seconds=self.max_seconds,
        )

    def check(self) -> None:
        """Refuse settings that cannot train, in words; quotas are the caller's business (see studio/policy.py)."""
        for s in settings_of(TrainConfig).values():
            if s.type not in (dict, list):  # types, choices and bounds as declared
                check_value(s, getattr(self, s.name))
        if not isinstance(self.columns, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.columns.items()
        ):
            raise AdapterError(f"columns must map roles to column names; got {self.columns!r}.")
        if self.mode == "head" and self.task != "classification":
            raise AdapterError("mode 'head' trains a classification head; instruction tuning has none.")
        if self.max_length < 8:
            raise AdapterError(f"max_length {self.max_length} is too short to hold a text; use 32 or more.")
        if not isinstance(self.adapter, AdapterConfig):
            raise AdapterError(f"adapter must be an AdapterConfig; got {type(self.adapter).__name__}.")
        _adapter_from_dict(self.adapter.to_dict())  # validated again: a config may be changed after it is made
        if (self.data_config or self.data_split) and not str(self.data).startswith("hf://datasets/"):
            raise AdapterError(
                "data_config and data_split choose within a Hub dataset (data hf://datasets/OWNER/NAME); "
                f"{path_tail(self.data)!r} is a file."
            )
        if self.init_from is not None and not self.init_from.strip():
            raise AdapterError(f"init_from must name an adapter folder; got {self.init_from!r}.")
        if self.init_from and self.mode == "full":
            raise AdapterError("init_from continues training an adapter; a full fine-tune trains the base instead.")
        require_tracker(self.report_to)


def training_settings() -> dict[str, Setting]:
    """Every setting of a run by name, in the order of `TrainConfig`'s fields, the adapter's in its place."""
    out: dict[str, Setting] = {}
    for f in fields(TrainConfig):
        out.update(settings_of(AdapterConfig, "adapter") if f.name == "adapter" else {})
        if f.name in settings_of(TrainConfig):
            out[f.name] = settings_of(TrainConfig)[f.name]
    return out


def _adapter_from_dict(data: dict[str, Any]) -> AdapterConfig:
    """`AdapterConfig.from_dict`, with a wrong type in a field (leave_out: "x") said in words too."""
    try:
        return AdapterConfig.from_dict(data)
    except AdapterError:
        raise
    except (TypeError, ValueError) as e:
        raise AdapterError(f"The adapter settings are not valid ({e}); see AdapterConfig for each field.") from None


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
