"""adapter_core: bottleneck adapters (Houlsby et al. 2019) for any Hugging Face transformer.

base = load_base("minilm")
add_adapter(base.model, "routing", AdapterConfig(bottleneck=64), labels=["orders", "billing"])
with use_adapter(base.model, "routing"):
    ...
save_adapter(base.model, "routing", "adapters/routing")
"""

from ._version import __version__
from .catalog import CATALOG, Base, load_base
from .config import PLACEMENTS, AdapterConfig
from .errors import AdapterError
from .inference import (
    REPETITION_WARNING,
    Prediction,
    RepetitionGuard,
    classification_logits,
    classify,
    format_prompt,
    generate,
    generate_batch,
    stream_generate,
)
from .inject import (
    TrainableSummary,
    adapter_parameters,
    add_adapter,
    count_adapter_params,
    freeze_base,
    get_record,
    list_adapters,
    remove_adapter,
    set_trainable,
    train_mode,
    trainable_summary,
)
from .io import load_adapter, read_adapter_config, save_adapter
from .placement import ARCHITECTURES
from .selection import thread_with_context, use_adapter

__all__ = [
    "ARCHITECTURES",
    "CATALOG",
    "PLACEMENTS",
    "REPETITION_WARNING",
    "AdapterConfig",
    "AdapterError",
    "Base",
    "Prediction",
    "RepetitionGuard",
    "TrainableSummary",
    "__version__",
    "add_adapter",
    "adapter_parameters",
    "count_adapter_params",
    "classification_logits",
    "classify",
    "format_prompt",
    "freeze_base",
    "generate",
    "generate_batch",
    "get_record",
    "list_adapters",
    "load_adapter",
    "load_base",
    "read_adapter_config",
    "remove_adapter",
    "save_adapter",
    "set_trainable",
    "train_mode",
    "stream_generate",
    "thread_with_context",
    "trainable_summary",
    "use_adapter",
]
