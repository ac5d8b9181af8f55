"""Sharing adapters: model cards, the Hugging Face Hub (pull and push), AdapterHub's format, hub packs.

    from adapter_core.share import pull, push_adapter, export_adapterhub, pack
    folders = pull("owner/repo")                      # checked, cached; offline with HF_HUB_OFFLINE=1
    push_adapter("adapters/routing", "me/routing")    # config, weights, model card, curve
    export_adapterhub("adapters/routing", "routing-adapterhub")
    pack("router", "~/.adapter_studio/adapters", "hub-pack")

`load_adapter(model, "hf://owner/repo")` and `load_adapter(model, <AdapterHub folder>)` work too: reading
a pulled or AdapterHub folder, and the card every saved adapter gets, belong to the format layer below
(`adapter_core.pull`, `adapter_core.adapterhub_read`, `adapter_core.card`); this face gives them to the
layers above with the writing side (push, pack, export).
"""

from ..adapterhub_format import export_problems, is_adapterhub_dir
from ..adapterhub_read import read_adapterhub
from ..card import model_card, write_card
from ..public import md, public_meta
from ..pull import HubRef, Room, adapter_folders, parse_ref, pull, pull_named
from .adapterhub_export import export_adapterhub
from .packs import pack
from .push import folder_card, push_adapter, push_files, push_operations

__all__ = [
    "HubRef",
    "Room",
    "adapter_folders",
    "export_adapterhub",
    "export_problems",
    "folder_card",
    "is_adapterhub_dir",
    "md",
    "model_card",
    "pack",
    "parse_ref",
    "public_meta",
    "pull",
    "pull_named",
    "push_adapter",
    "push_files",
    "push_operations",
    "read_adapterhub",
    "write_card",
]
