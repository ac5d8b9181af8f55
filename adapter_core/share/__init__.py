"""Sharing adapters: model cards, the Hugging Face Hub (pull and push), AdapterHub's format, hub packs.

    from adapter_core.share import pull, push_adapter, export_adapterhub, pack
    folders = pull("owner/repo")                      # checked, cached; offline with HF_HUB_OFFLINE=1
    push_adapter("adapters/routing", "me/routing")    # config, weights, model card, curve
    export_adapterhub("adapters/routing", "routing-adapterhub")
    pack("router", "~/.adapter_studio/adapters", "hub-pack")

`load_adapter(model, "hf://owner/repo")` and `load_adapter(model, <AdapterHub folder>)` work too.
"""

from ..adapterhub_format import export_problems, is_adapterhub_dir
from ..adapterhub_read import read_adapterhub
from ..card import model_card, write_card
from ..public import public_meta
from ..pull import HubRef, parse_ref, pull
from .adapterhub_export import export_adapterhub
from .pack import pack
from .push import push_adapter, push_files, push_operations

__all__ = [
    "HubRef",
    "export_adapterhub",
    "export_problems",
    "is_adapterhub_dir",
    "model_card",
    "pack",
    "parse_ref",
    "public_meta",
    "pull",
    "push_adapter",
    "push_files",
    "push_operations",
    "read_adapterhub",
    "write_card",
]
