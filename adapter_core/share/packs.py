"""A hub pack: a router and its department adapters in one folder (or Hub repo), ready to serve.

The departments are found as the server finds them (`adapter_core.routing.department_routes`): the instruction
adapter whose name shares a word with each router label. The pack's `README.md` lists the routes and
the exact `python -m adapter_core serve` command that runs them; each adapter keeps its own card.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from pathlib import Path

from ..atomic import replace_dir
from ..card import read_curve, write_card
from ..errors import AdapterError
from ..library import Library
from ..public import base_label, md, public_meta
from ..routing import department_routes, out_of_scope_rule
from ..schema import CARD_FILE, CONFIG_FILE, STATS_FILE, WEIGHTS_FILE


def pack(
    router: str,
    library: str | Path,
    out: str | Path,
    repo_id: str | None = None,
    fallback: str | None = None,
    owner: str | None = None,
) -> Path:
    """Write router `router` of `library` and its departments to `out` (replaced atomically). `repo_id`:
    the Hub repo the pack will be pushed to (its card's command pulls from there); `owner`: whose
    library view to pack (None: everything)."""
    lib = Library(library)
    entry = lib.get(router, owner)
    if entry.task != "classification":
        raise AdapterError(f"{router!r} is an instruction adapter; a pack's router is a classification adapter.")
    routes = department_routes(entry.meta.get("labels") or [], lib.names("instruction", owner))
    if not routes:
        raise AdapterError(
            f"No instruction adapter matches a label of {router!r} ({', '.join(entry.meta['labels'][:8])}): a "
            "department's name must contain its label (orders -> orders or orders-v2)."
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in dict.fromkeys([entry.name, *routes.values()]):
            _copy(lib.get(name, owner).path, staging / name, f"{repo_id}/{name}" if repo_id else None)
        (staging / CARD_FILE).write_text(pack_card(entry.name, entry.meta, routes, out, repo_id, fallback), "utf-8")
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _copy(source: Path, target: Path, repo_id: str | None) -> None:
    """One adapter, fit to publish: its weights, a clean config, and a card with its curve."""
    target.mkdir()
    shutil.copyfile(source / WEIGHTS_FILE, target / WEIGHTS_FILE)
    if (source / STATS_FILE).is_file():  # the router's out-of-scope statistics
        shutil.copyfile(source / STATS_FILE, target / STATS_FILE)
    meta = public_meta(json.loads((source / CONFIG_FILE).read_text(encoding="utf-8")))
    (target / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    write_card(target, meta, events=read_curve(source), repo_id=repo_id)


def serve_command(router: str, out: Path, repo_id: str | None, fallback: str | None) -> str:
    library = f"hf://{repo_id}" if repo_id else out.name
    parts = ["python", "-m", "adapter_core", "serve", "--library", library, "--router", router]
    if fallback:
        parts += ["--fallback", fallback]
    return shlex.join(parts)


def pack_card(
    router: str, meta: dict, routes: dict[str, str], out: Path, repo_id: str | None, fallback: str | None
) -> str:
    labels = meta.get("labels") or []
    rule = out_of_scope_rule(meta)
    rows = [f"| {md(label)} | {md(routes.get(label, 'fallback'))} |" for label in labels]
    where = "the pulled repository" if repo_id else "the folder above this pack"
    lines = [
        "---",
        "library_name: adapter-studio",
        "tags:",
        "- adapter-studio",
        "- adapters",
        "- router",
        "---",
        "",
        f"# Hub pack: {md(router)} and {len(set(routes.values()))} departments",
        "",
        f"A router (`{md(router)}`, a classification adapter) and the instruction adapters it sends messages to, all "
        f"on the base `{md(base_label(meta))}`. Each adapter's folder has its own model card.",
        "",
        "## Routes",
        "",
        "| router label | department adapter |",
        "| --- | --- |",
        *rows,
        "",
        "Messages whose label has no department, or which the router judges out of scope ("
        + (
            f"its {rule['score']} score above the threshold calibrated on its validation data"
            if rule
            else "none: it has no calibrated threshold"
        )
        + "), go to the fallback: "
        + (f"`{md(fallback)}`." if fallback else "the departments' bare base model."),
        "",
        "## Serve it",
        "",
        f"Run from {where}" + (":" if repo_id else f" (the pack is the folder `{md(out.name)}`):"),
        "",
        "```bash",
        serve_command(router, out, repo_id, fallback),
        "```",
        "",
        'Then `model="auto"` on `/v1/chat/completions` routes each message (any OpenAI client works).',
    ]
    return "\n".join(lines) + "\n"
