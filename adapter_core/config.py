"""AdapterConfig: what a bottleneck adapter looks like, validated, and round-tripped through JSON."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import AdapterError
from .settings import POSITIVE, Bounds, setting

_LAYER_SEPARATORS = re.compile(r"[\s,;]+")

PLACEMENTS = ("houlsby", "pfeiffer", "parallel")  # where in a block an adapter sits (Houlsby, Pfeiffer, He et al.)
TASKS = ("classification", "instruction")
TASK_ADAPTER = {"classification": "a classification adapter", "instruction": "an instruction adapter"}
ACTIVATIONS = ("gelu", "relu", "swish", "tanh")
INITS = ("normal", "kaiming", "xavier", "houlsby")
DEFAULT_BOTTLENECK = 64
# The adapter's width r in plain words: under 32 small (Quick look's 16), under 128 medium (Balanced's 64),
# else large (Capacity's 256). The studio says the word first and r after it.
SIZE_WORDS = ((32, "small"), (128, "medium"))
LARGE = "large"
# He et al. (2022) found a scaled parallel adapter works best with s=4; serial adapters need no scaling.
DEFAULT_PARALLEL_SCALING = 4.0


def parse_layers(value: Any) -> list[int]:
    """ "0, 1, 5" (or a list) as layer indices; empty: none left out."""
    if value in (None, ""):
        return []
    parts = value if isinstance(value, (list, tuple)) else [p for p in _LAYER_SEPARATORS.split(str(value).strip()) if p]
    try:
        layers = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise AdapterError(
            f"Layers to leave out are whole numbers counted from 0, separated by commas (e.g. 0, 1); got {str(value)[:60]!r}."
        ) from None
    if any(i < 0 for i in layers):
        raise AdapterError(f"Layers to leave out are counted from 0; got {layers}.")
    return sorted(set(layers))


def adapter_size(bottleneck: int) -> str:
    """An adapter of width `bottleneck` (r) in plain words: "small", "medium" or "large"."""
    return next((word for below, word in SIZE_WORDS if bottleneck < below), LARGE)


def size_in_words(bottleneck: Any) -> str:
    """How the studio says a width: "medium adapter, r = 64"."""
    try:
        r = int(bottleneck)
    except (TypeError, ValueError):
        return ""
    return f"{adapter_size(r).capitalize()} adapter, r = {r}"


def parse_json_object(text: str) -> dict:
    """'{"layers": ..., "attn": ..., "ffn": ...}': a JSON object, as target_modules takes it."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise AdapterError(
            'give a JSON object such as {"layers": "model.layers", "attn": "self_attn.o_proj", "ffn": "mlp.down_proj"}'
        )
    return value


@dataclass
class AdapterConfig:
    """Shape and placement of one bottleneck adapter: `h + scaling * W_up(f(W_down h))`.

    Give the bottleneck either directly (`bottleneck`) or as a `reduction_factor` of the hidden size
    (hidden 768 with factor 16 gives 48). With neither, the bottleneck is 64. Each field is a setting
    (`adapter_core/settings.py`): its help, choices and bounds are declared here, once.
    """

    bottleneck: int | None = setting(
        None,
        f"How much the adapter can learn, as r, the width of its bottleneck: a small adapter has r under "
        f"{SIZE_WORDS[0][0]}, a medium one under {SIZE_WORDS[1][0]}, a large one {SIZE_WORDS[1][0]} or more. Larger "
        "learns more, trains slower and takes more disk; auto: the preset's size, unless a reduction factor is given",
        label="Adapter size",
        describe=size_in_words,
        auto="preset",
        typical=DEFAULT_BOTTLENECK,
        bounds=Bounds(1),
        limit="max_bottleneck",
        sweep="vary",
        studio="main",
    )
    reduction_factor: float | None = setting(
        None, "The adapter's width as the hidden size divided by this factor, instead of r", bounds=POSITIVE, sweep="no"
    )
    placement: str = setting(
        "houlsby",
        "Where the adapter sits in each layer: after attention and feed-forward (houlsby, Houlsby 2019), after "
        "feed-forward only, half the size (pfeiffer, Pfeiffer 2020), or beside them (parallel, He 2022)",
        label="Where the adapter sits",
        choices=PLACEMENTS,
        labels={
            "houlsby": "After attention and feed-forward (Houlsby)",
            "pfeiffer": "After feed-forward only (Pfeiffer)",
            "parallel": "Beside them (parallel)",
        },
        sweep="vary",
        studio="advanced",
    )
    activation: str = setting(
        "gelu",
        "The function between the adapter's two layers (its non-linearity); gelu is a safe choice",
        label="Activation function",
        choices=ACTIVATIONS,
        studio="advanced",
    )
    init: str = setting(
        "normal",
        "How the adapter's weights start: the down-projection by this rule, the up-projection at zero, so every "
        "choice begins as the unchanged base",
        label="Initialisation",
        choices=INITS,
        studio="advanced",
    )
    dropout: float = setting(0.0, "The adapter's own dropout", bounds=Bounds(0, 1, high_open=True))
    scaling: float | None = setting(
        None,
        "How strongly the adapter's output counts: it is multiplied by this; 0 or empty: the default, 1 (4 for "
        "parallel, as He et al. 2022)",
        label="Output scaling",
        bounds=POSITIVE,
        studio="advanced",
    )
    leave_out: list[int] = setting(
        factory=list,
        help="Layers (counted from 0) that get no adapter, e.g. 0, 1; fewer layers, fewer parameters",
        label="Layers to leave out",
        parse=parse_layers,
        studio="advanced",
    )
    target_modules: dict[str, str] | None = setting(
        None,
        "Where adapters go in a model outside the placement table (JSON): "
        '{"layers": "model.layers", "attn": "self_attn.o_proj", "ffn": "mlp.down_proj"}',
        parse=parse_json_object,
    )

    def __post_init__(self) -> None:
        if self.bottleneck is not None and self.reduction_factor is not None:
            raise AdapterError(
                "Give either bottleneck or reduction_factor, not both "
                f"(got bottleneck={self.bottleneck}, reduction_factor={self.reduction_factor})."
            )
        if self.bottleneck is None and self.reduction_factor is None:
            self.bottleneck = DEFAULT_BOTTLENECK
        if self.bottleneck is not None and (
            isinstance(self.bottleneck, bool) or not isinstance(self.bottleneck, int) or self.bottleneck < 1
        ):
            raise AdapterError(
                f"bottleneck must be a positive whole number, got {self.bottleneck!r}. "
                "Typical sizes are 16 to 256; 64 is a good start."
            )
        if self.reduction_factor is not None and not (
            isinstance(self.reduction_factor, (int, float)) and self.reduction_factor > 0
        ):
            raise AdapterError(
                f"reduction_factor must be a positive number, got {self.reduction_factor!r}. "
                "Typical factors are 4 to 64 (hidden size divided by bottleneck)."
            )
        _check_choice("placement", self.placement, PLACEMENTS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("init", self.init, INITS)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise AdapterError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        if self.scaling is None:
            self.scaling = DEFAULT_PARALLEL_SCALING if self.placement == "parallel" else 1.0
        self.leave_out = sorted({int(i) for i in self.leave_out})
        if any(i < 0 for i in self.leave_out):
            raise AdapterError(f"leave_out holds layer indices counted from 0, got {self.leave_out}.")
        if self.target_modules is not None:
            missing = {"layers"} - set(self.target_modules)
            if missing or not ({"attn", "ffn"} & set(self.target_modules)):
                raise AdapterError(
                    "target_modules needs 'layers' (the path of the block list) and at least one of "
                    "'attn' or 'ffn' (output projections inside a block), e.g. "
                    '{"layers": "model.layers", "attn": "self_attn.o_proj", "ffn": "mlp.down_proj"}; '
                    f"got {self.target_modules}."
                )

    def bottleneck_for(self, hidden_size: int) -> int:
        """The bottleneck width this config gives on a model of `hidden_size`."""
        if self.bottleneck is not None:
            return self.bottleneck
        return max(1, int(round(hidden_size / self.reduction_factor)))

    @property
    def slots(self) -> tuple[str, ...]:
        """Which sub-layers carry the adapter: every one for Houlsby and parallel, the FFN for Pfeiffer."""
        return ("ffn",) if self.placement == "pfeiffer" else ("attn", "cross", "ffn")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        check_known_fields(cls, data, "adapter config")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AdapterConfig:
        return cls.from_dict(json.loads(text))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise AdapterError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def check_known_fields(cls: type, data: dict[str, Any], what: str) -> None:
    """The one policy for settings read from a dict (a config file, an API call): an unknown key is an
    error, so that a misspelt setting is never silently ignored."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise AdapterError(f"Unknown {what} field(s): {sorted(unknown)}. Known fields: {sorted(known)}.")
