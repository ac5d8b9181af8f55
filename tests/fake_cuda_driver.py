"""A CUDA build of torch on a machine without a GPU, with a driver that says who started it.

On a ZeroGPU Space the main process has a CUDA build of torch and `spaces`' patches, and must never start
the CUDA driver: a driver started there breaks CUDA in every worker forked after it (seen on an H200:
bench/RESULTS.md, "On a GPU"). A CPU build of torch cannot show this, since it has no driver to start.
Here a CUDA build loads `fake_cuda_driver.c` instead of NVIDIA's driver: it has no device, and it writes
down each process that starts it. A test then asserts that the Space's main process never did.

What it cannot show: anything a real GPU does after the driver starts (the GPU bench does, when one is lent).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_suffix(".c")


def cuda_build() -> bool:
    """Whether the torch installed here is a CUDA build, read from its files (importing torch would come
    before `spaces`, which a Space imports first)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    version = Path(spec.origin).with_name("version.py").read_text()
    return re.search(r"^cuda\b[^=\n]*=\s*'", version, re.M) is not None


def environment(directory: Path, log: Path) -> dict[str, str]:
    """The environment of a process that loads the fake driver (compiled into `directory`) and logs to `log`."""
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCE)], check=True)
    paths = [str(directory), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(paths), "FAKE_CUDA_DRIVER_LOG": str(log)}


def starts(log: Path, pid: int) -> list[str]:
    """The driver calls that process `pid` made (none when the log does not exist)."""
    return [call for who, call in _calls(log) if who == pid]


def processes(log: Path) -> set[int]:
    """Every process that reached the driver."""
    return {who for who, _ in _calls(log)}


def _calls(log: Path) -> list[tuple[int, str]]:
    if not log.is_file():
        return []
    lines = (line.split(maxsplit=1) for line in log.read_text().splitlines() if line.strip())
    return [(int(who), call) for who, call in lines]
