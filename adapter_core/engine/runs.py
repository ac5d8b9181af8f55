"""The run store: one folder per run under `$ADAPTER_STUDIO_HOME/runs`, surviving restarts.

A run folder holds `config.json` (the TrainConfig), `status.json`, `metrics.jsonl` (every event)
and, once the first evaluation is done, `adapter/` (loadable at any time after that).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..errors import AdapterError
from ..io import CONFIG_FILE
from ..paths import studio_home

ACTIVE = ("queued", "loading", "training")
_slug = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def adapter_dir(self) -> Path:
        return self.dir / "adapter"

    @property
    def has_adapter(self) -> bool:
        return (self.adapter_dir / CONFIG_FILE).is_file()

    def config(self) -> dict[str, Any]:
        return _read_json(self.dir / "config.json")

    def status(self) -> dict[str, Any]:
        """The saved status; a run left active by a process that is gone reads as `interrupted`."""
        status = _read_json(self.dir / "status.json") or {"status": "unknown"}
        if status.get("status") in ACTIVE and status.get("pid") != os.getpid() and not _alive(status.get("pid")):
            status = {
                **status,
                "status": "interrupted",
                "message": "The process running it ended (app restart?). The last best checkpoint is kept.",
            }
        return status

    def set_status(self, status: str, **fields: Any) -> None:
        current = _read_json(self.dir / "status.json") or {}
        write_json_atomic(
            self.dir / "status.json",
            {**current, **fields, "status": status, "pid": os.getpid(), "updated": time.time()},
        )

    def append_event(self, event: dict[str, Any]) -> None:
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def events(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        return out


class RunStore:
    def __init__(self, home: str | Path | None = None):
        self.root = Path(home or studio_home()) / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def create(self, name: str, config: dict[str, Any]) -> Run:
        with self._lock:
            stem = time.strftime("%Y%m%d-%H%M%S") + "-" + (_slug.sub("-", name).strip("-") or "run")
            path, n = self.root / stem, 1
            while path.exists():
                n += 1
                path = self.root / f"{stem}-{n}"
            path.mkdir(parents=True)
        run = Run(path)
        write_json_atomic(path / "config.json", config)
        run.set_status("queued", created=time.time())
        return run

    def list(self) -> list[Run]:
        """Every run, newest first."""
        runs = [Run(p) for p in self.root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
        return sorted(runs, key=lambda r: r.id, reverse=True)

    def get(self, run_id: str) -> Run:
        path = self.root / run_id
        if "/" in run_id or run_id.startswith(".") or not (path / "config.json").is_file():
            raise AdapterError(f"No run {run_id!r} in {self.root}.")
        return Run(path)

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self.get(run_id).dir)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
