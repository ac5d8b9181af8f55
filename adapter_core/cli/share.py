"""`python -m adapter_core push | pull | export | pack`: adapters (and packs) to and from the Hugging Face Hub,
and in AdapterHub's format."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ..atomic import replace_dir
from ..io import adapter_path
from ..pull import ADAPTER_FILES, pull
from ..schema import CARD_FILE
from .errors import OK


def add_parsers(sub) -> None:
    pu = sub.add_parser(
        "push",
        help="push an adapter (or a pack) to the Hugging Face Hub with its model card",
        description="Push an adapter folder (config, weights, a model card written for the repo, the curve) "
        "or a pack folder to a Hub repo, created if missing. The config sent names no server path and no "
        "data file.",
    )
    pu.add_argument("--adapter", required=True, help="adapter folder, run folder, or pack folder")
    pu.add_argument("--repo", required=True, help="owner/name on the Hub")
    pu.add_argument("--private", action="store_true", help="create the repo private")
    pu.add_argument("--token", help="a write token (default: $HF_TOKEN or your `hf auth login`)")
    pu.add_argument("--license", help="the card's licence (default: the base model's, when known)")
    pu.add_argument("--dataset", action="append", help="a Hub dataset id the adapter was trained on (repeat)")
    pu.add_argument("--dry-run", action="store_true", help="print the files and the card; send nothing")
    pu.set_defaults(command_fn=cmd_push)

    pl = sub.add_parser(
        "pull",
        help="pull an adapter (or a pack) from the Hugging Face Hub, checked like an upload",
        description="Download only adapter_config.json, adapter_model.safetensors, README.md and curve.png, "
        "check them as the studio checks uploads, and keep them in the Hugging Face cache (offline with "
        "HF_HUB_OFFLINE=1 once cached).",
    )
    pl.add_argument("repo", help="owner/name, owner/name/<adapter of a pack>, optionally @revision; or hf://...")
    pl.add_argument("--out", help="copy it here too (a pack: one folder per adapter), e.g. into a library folder")
    pl.add_argument("--token", help="for a private repo (default: $HF_TOKEN or your login)")
    pl.set_defaults(command_fn=cmd_pull)

    ex = sub.add_parser(
        "export",
        help="write an adapter in AdapterHub's format (or an AdapterHub adapter in ours)",
        description="--format adapterhub: a folder that `adapters` loads with model.load_adapter(OUT, "
        "use_safetensors=True), with the same outputs. --format adapter_core: an AdapterHub folder "
        "(saved with use_safetensors=True) as an Adapter Studio adapter.",
    )
    ex.add_argument("--adapter", required=True, help="adapter or run folder")
    ex.add_argument("--format", choices=["adapterhub", "adapter_core"], default="adapterhub")
    ex.add_argument("--out", required=True, help="folder to write (replaced)")
    ex.add_argument("--without-head", action="store_true", help="adapterhub: the adapter alone, without its head")
    ex.add_argument("--base", help="adapter_core: the base to load it on (default: the model its config names)")
    ex.set_defaults(command_fn=cmd_export)

    pk = sub.add_parser(
        "pack",
        help="a router and its department adapters as one folder (or Hub repo), with a card to serve them",
        description="Copy a router and the instruction adapters its labels route to (found as `serve` finds "
        "them) into one folder with a card listing the routes and the `serve` command; --push sends it.",
    )
    pk.add_argument("--router", required=True, help="the router's name in the library")
    pk.add_argument("--library", required=True, help="the library folder (the studio's: ~/.adapter_studio/adapters)")
    pk.add_argument("--out", required=True, help="the pack folder to write (replaced)")
    pk.add_argument("--fallback", help="the pack's fallback, as for serve --fallback")
    pk.add_argument("--push", metavar="REPO", help="push the pack to this Hub repo (owner/name)")
    pk.add_argument("--private", action="store_true")
    pk.add_argument("--token")
    pk.set_defaults(command_fn=cmd_pack)


def cmd_push(args: argparse.Namespace) -> int:
    from ..share.push import push_adapter, push_files

    folder, card = adapter_path(args.adapter), {"license": args.license, "datasets": args.dataset}
    if args.dry_run:
        files = push_files(folder, args.repo, **card)
        for path, content in files.items():
            size = content.stat().st_size if isinstance(content, Path) else len(content)
            print(f"{path}\t{size:,} bytes")
        readme = files.get("README.md")
        print(readme.read_text("utf-8") if isinstance(readme, Path) else (readme or b"").decode())
        return OK
    url = push_adapter(folder, args.repo, args.token, args.private or None, **card)
    print(f"pushed {folder.name} to https://huggingface.co/{args.repo} ({url})")
    return OK


def cmd_pull(args: argparse.Namespace) -> int:
    folders = pull(args.repo, token=args.token)
    if args.out:
        out = Path(args.out)
        copy_adapters(folders, out)
        print(f"pulled {args.repo}: {len(folders)} adapter(s) in {out}")
    else:
        for folder in folders:
            print(folder)
    return OK


def copy_adapters(folders: list[Path], out: Path) -> None:
    """The pulled files into `out` (replaced atomically): one adapter, or a pack's folders and card."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        targets = {folders[0]: staging} if len(folders) == 1 else {f: staging / f.name for f in folders}
        for folder, target in targets.items():
            target.mkdir(exist_ok=True)
            for name in ADAPTER_FILES:
                if (folder / name).is_file():
                    shutil.copyfile(folder / name, target / name)
        if len(folders) > 1 and (folders[0].parent / CARD_FILE).is_file():
            shutil.copyfile(folders[0].parent / CARD_FILE, staging / CARD_FILE)
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cmd_export(args: argparse.Namespace) -> int:
    folder, out = adapter_path(args.adapter), Path(args.out)
    if args.format == "adapterhub":
        from ..share.adapterhub_export import export_adapterhub

        export_adapterhub(folder, out, with_head=not args.without_head)
        print(f"wrote {out} in AdapterHub's format: model.load_adapter({str(out)!r}, use_safetensors=True)")
        return OK
    from ..catalog import load_base
    from ..io import load_adapter, read_adapter_config, save_adapter
    from ..schema import base_name

    meta = read_adapter_config(folder)
    base = load_base(args.base or base_name(meta))
    name = load_adapter(base.model, folder)
    save_adapter(base.model, name, out, extra={"base_model": args.base or base_name(meta)})
    print(f"wrote {out} as an Adapter Studio adapter")
    return OK


def cmd_pack(args: argparse.Namespace) -> int:
    from ..share.packs import pack

    out = pack(args.router, args.library, args.out, repo_id=args.push, fallback=args.fallback)
    print(f"wrote the pack {out}", file=sys.stderr)
    print((out / "README.md").read_text("utf-8"))
    if args.push:
        from ..share.push import push_adapter

        url = push_adapter(out, args.push, args.token, args.private or None)
        print(f"pushed the pack to https://huggingface.co/{args.push} ({url})", file=sys.stderr)
    return OK
