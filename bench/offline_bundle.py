"""Pack what a GPU machine without network needs to run the GPU benches, in parts of a bounded size.

    python bench/offline_bundle.py --out BUNDLE [--part-mb 57] [--python 3.12]

A GPU machine is often lent with its own CUDA build of torch and nothing else reachable. This writes,
under BUNDLE/part-NN/, one gzipped tar split into parts (so that each fits a transfer limit): the wheels
of this environment's versions of the packages such an image lacks (transformers, datasets, gradio,
`spaces`, ... for CPython `--python` on x86-64 Linux, without their dependencies), and the two
embedded models' package folders. On the GPU machine, from the repository's root:

    mkdir -p /tmp/bundle && cat BUNDLE/part-*/bundle.tgz.* | tar xzf - -C /tmp/bundle
    python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/bundle/wheels/*.whl
    cp -r /tmp/bundle/models/* /tmp/site/
    PYTHONPATH=/tmp/site:. HF_HUB_OFFLINE=1 python3 bench/run_all.py --gpu

The list below is what an H200 machine's image (torch 2.11, CUDA 13) lacked or held in another version
(bench/RESULTS.md, "On a GPU"); the machine's torch, numpy, pandas, pyarrow and accelerate are kept.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGES = [
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "httpx2",
    "httpcore2",
    "truststore",
    "datasets",
    "dill",
    "multiprocess",
    "gguf",
    "spaces",
    "gradio",
    "gradio_client",
    "hf-gradio",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_core",
    "annotated-types",
    "typing-inspection",
    "orjson",
    "python-multipart",
    "groovy",
    "safehttpx",
    "semantic-version",
    "tomlkit",
    "brotli",
    "pydub",
    "uvicorn",
    "opentelemetry-api",
    "pytz",
    "click",
    "fsspec",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "typer",
    "typing_extensions",
    "annotated-doc",
    "tqdm",
    "filelock",
    "packaging",
    "shellingham",
    "PyYAML",
    "regex",
]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def download(wheels: Path, python: str) -> None:
    pins = [f"{name}=={version(name)}" for name in PACKAGES]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
    subprocess.run([*cmd, "--python-version", python, "--implementation", "cp", *platforms, *pins], check=True)


def models() -> list[Path]:
    """The embedded models' package folders (each holds its model folder or GGUF file)."""
    from adapter_core.catalog import CATALOG, embedded_path

    folders = []
    for entry in CATALOG.values():
        path = embedded_path(entry)
        if path is None:
            sys.exit(f"{entry.package} is not installed here: run `make setup` first")
        folders.append(path.parent)
    return folders


def split(bundle: Path, out: Path, part_bytes: int) -> list[Path]:
    parts = []
    with open(bundle, "rb") as f:
        while chunk := f.read(part_bytes):
            folder = out / f"part-{len(parts) + 1:02d}"  # in order when listed
            folder.mkdir(parents=True, exist_ok=True)
            parts.append(folder / f"bundle.tgz.{len(parts):03d}")
            parts[-1].write_bytes(chunk)
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--part-mb", type=float, default=57.0, help="the largest part, in MB (a transfer's limit)")
    ap.add_argument("--python", default="3.12", help="the GPU machine's Python, for binary wheels")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        download(wheels, args.python)
        bundle = Path(tmp) / "bundle.tgz"
        with tarfile.open(bundle, "w:gz") as tar:
            tar.add(wheels, "wheels")
            for folder in models():
                tar.add(folder, f"models/{folder.name}", filter=lambda t: None if "__pycache__" in t.name else t)
        parts = split(bundle, args.out, int(args.part_mb * 1e6))
    print(f"{len(parts)} parts under {args.out}: " + ", ".join(f"{p.stat().st_size / 1e6:.1f} MB" for p in parts))


if __name__ == "__main__":
    main()
