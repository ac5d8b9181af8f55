"""The "How to load" part of a model card: with adapter_core, and with AdapterHub where the export applies."""

from __future__ import annotations

from typing import Any

from .adapterhub_format import export_problems
from .catalog import CATALOG
from .public import base_label, md, public_base
from .schema import base_name

HERE = "path/to/this/folder"


def _base_arg(meta: dict[str, Any]) -> str:
    """What `load_base` takes for this base: its catalog name, or its hub id."""
    name = base_name(meta)
    return name if name in CATALOG else public_base(meta) or base_label(meta)


def usage_section(meta: dict[str, Any], repo_id: str | None, adapterhub: bool) -> list[str]:
    name = meta.get("name") or "adapter"
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    source = f"hf://{repo_id}" if repo_id else HERE
    ours = _adapter_core(meta, source, repo_id, slug)
    if adapterhub:
        return ["## How to load", "", "### With AdapterHub (`adapters`)", "", *_adapters_snippet(meta, HERE), *ours]
    problems, headless = export_problems(meta), export_problems(meta, with_head=False)
    if headless:
        theirs = [f"The AdapterHub export does not apply to this adapter: {md('; '.join(headless))}.", ""]
    else:
        folder = f"adapters/{slug}" if repo_id else HERE
        flag = " --without-head" if problems else ""
        theirs = [
            "Write it in AdapterHub's format (safetensors; their loader needs `use_safetensors=True`)"
            + (f", the adapter alone, without its head: {md(problems[0])}:" if problems else ":"),
            "",
            "```bash",
            f"python -m adapter_core export --adapter {folder} --format adapterhub --out {slug}-adapterhub{flag}",
            "```",
            "",
            *_adapters_snippet(meta, f"{slug}-adapterhub"),
        ]
    return ["## How to load", "", *ours, "### With AdapterHub (`adapters`)", "", *theirs]


def _adapter_core(meta: dict[str, Any], source: str, repo_id: str | None, slug: str) -> list[str]:
    classify = meta["task"] == "classification"
    call = (
        'print(classify(base.model, base.tokenizer, ["Where is my parcel?"], name)[0].label)'
        if classify
        else 'print(generate(base.model, base.tokenizer, "Where is my parcel?", name))'
    )
    lines = [
        "### With adapter_core",
        "",
        "```python",
        f"from adapter_core import load_adapter, load_base, {'classify' if classify else 'generate'}",
        "",
        f'base = load_base("{_base_arg(meta)}")',
        f'name = load_adapter(base.model, "{source}")',
        call,
        "```",
        "",
    ]
    folder = f"adapters/{slug}"
    use = "predict --text" if classify else "chat --prompt"
    lines += ["```bash"]
    if repo_id:
        lines += [f"python -m adapter_core pull {repo_id} --out {folder}"]
    else:
        folder = HERE
    lines += [f'python -m adapter_core {use} "Where is my parcel?" --adapter {folder}', "```", ""]
    return lines


def _adapters_snippet(meta: dict[str, Any], folder: str) -> list[str]:
    base = public_base(meta) or "<the base model's hub id>"
    return [
        "```python",
        "from adapters import AutoAdapterModel",
        "",
        f'model = AutoAdapterModel.from_pretrained("{base}")',
        f'name = model.load_adapter("{folder}", use_safetensors=True, set_active=True)',
        "```",
        "",
    ]
