"""Adapter switching on MiniLM: select a resident adapter, load one from disk onto the resident base, and
reload the whole model, side by side in one run.

    python bench/switching.py [--repeats 30]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import summary, timed  # noqa: E402

from adapter_core import (  # noqa: E402
    AdapterConfig,
    add_adapter,
    load_adapter,
    load_base,
    remove_adapter,
    save_adapter,
    use_adapter,  # noqa: E402
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    base = load_base("minilm")
    model = base.model
    for name in ("orders", "tech", "billing"):
        add_adapter(model, name, AdapterConfig(bottleneck=64), labels=["a", "b", "c"])
    folder = Path(tempfile.mkdtemp()) / "orders"
    save_adapter(model, "orders", folder)

    def select():
        with use_adapter(model, "billing"):
            pass

    def load_from_disk():
        load_adapter(model, folder, name="loaded")
        remove_adapter(model, "loaded")

    select_s = [timed(select) for _ in range(args.repeats * 100)]
    load_s = [timed(load_from_disk) for _ in range(args.repeats)]
    reload_s = [timed(lambda: load_base("minilm")) for _ in range(max(3, args.repeats // 5))]
    rows = {"select_ms": summary(select_s), "load_from_disk_ms": summary(load_s), "reload_model_ms": summary(reload_s)}
    rows["reload_vs_select"] = round(rows["reload_model_ms"]["median"] / rows["select_ms"]["median"])
    rows["reload_vs_load"] = round(rows["reload_model_ms"]["median"] / rows["load_from_disk_ms"]["median"], 1)
    print(f"select a resident adapter: {rows['select_ms']['median'] * 1e3:.1f} µs (target < 1 ms)")
    print(
        f"load an adapter from disk onto the resident base: {rows['load_from_disk_ms']['median']:.1f} ms "
        "(target < 100 ms)"
    )
    print(f"reload the model: {rows['reload_model_ms']['median']:.0f} ms")
    print(json.dumps({"bench": "switching", "base": "minilm", **rows}))


if __name__ == "__main__":
    main()
