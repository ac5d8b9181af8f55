"""adapter_core: bottleneck adapters (Houlsby et al. 2019) for any Hugging Face transformer.

base = load_base("minilm")
add_adapter(base.model, "routing", AdapterConfig(bottleneck=64), labels=["orders", "billing"])
with use_adapter(base.model, "routing"):
    ...
save_adapter(base.model, "routing", "adapters/routing")

This face is the library's API. Its packages have their own: `adapter_core.engine` (training),
`adapter_core.serve` (the HTTP server), `adapter_core.share` (the Hub, cards, AdapterHub's format).
Importing this one imports none of them.
"""

from ._version import __version__
from .atomic import replace_dir, write_json_atomic
from .catalog import CATALOG, Base, load_base, position_limit
from .config import PLACEMENTS, TASK_ADAPTER, AdapterConfig, parse_layers
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
from .library import NAMESPACES, OWNER_FILE, Entry, Library, read_owner
from .metric_names import METRICS, metric_gloss, metric_label
from .out_of_scope import FALSE_REJECTION, MAX_FALSE_REJECTION
from .paths import path_tail, studio_home
from .placement import ARCHITECTURES
from .routing import Route, check_false_rejection, curve_point, out_of_scope_rule, threshold_at
from .schema import (
    CONFIG_FILE,
    CURVE_FILE,
    MAX_CONFIG_BYTES,
    STATS_FILE,
    WEIGHTS_FILE,
    check_weights_match,
    read_meta_file,
    read_safetensors_header,
    read_stats,
)
from .selection import thread_with_context, use_adapter
from .settings import Setting

__all__ = [
    # Adapters on a base model
    "ARCHITECTURES",  # model type -> where adapters go in that architecture
    "CATALOG",
    "PLACEMENTS",  # the placement names: houlsby, pfeiffer, parallel
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
    # For the layers above: a library of adapter folders, routing, the file format's names and checks
    "CONFIG_FILE",
    "CURVE_FILE",
    "MAX_CONFIG_BYTES",
    "NAMESPACES",
    "OWNER_FILE",
    "TASK_ADAPTER",
    "STATS_FILE",
    "WEIGHTS_FILE",
    "Entry",
    "Library",
    "METRICS",  # metric key -> its plain name and gloss
    "metric_gloss",
    "metric_label",
    "Route",
    "check_weights_match",
    "read_owner",
    "parse_layers",
    "path_tail",
    "position_limit",
    "read_meta_file",
    "read_safetensors_header",
    "read_stats",
    "out_of_scope_rule",
    "curve_point",
    "FALSE_REJECTION",
    "MAX_FALSE_REJECTION",
    "check_false_rejection",
    "threshold_at",
    "replace_dir",
    "Setting",
    "studio_home",
    "write_json_atomic",
]
