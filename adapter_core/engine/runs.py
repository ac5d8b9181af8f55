"""The run store: one folder per run under `$ADAPTER_STUDIO_HOME/runs`, surviving restarts.

A run folder holds `config.json` (the TrainConfig), `status.json`, `metrics.jsonl` (every event)
and, once the first evaluation is done, `adapter/` (loadable at any time after that) and, while the
run can still be resumed, `checkpoint/`; a finished classification run adds `report.json`.
`RunRecorder` writes the events of a run into its folder, for the CLI and the job manager alike.

`status.json` records who the run belongs to (`owner`; none in local mode) and which process wrote
it last (`boot`, a random id per process). A run left active by another process, one that is gone
after a restart, reads as `interrupted`: process ids are no proof of life, since a restarted
container hands the same pid to the new process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import write_json_atomic
from ..errors import AdapterError
from ..io import CONFIG_FILE
from ..paths import studio_home

if TYPE_CHECKING:
    from .config import Event, TrainConfig

ACTIVE = ("queued", "loading", "training")
BOOT_ID = uuid.uuid4().hex  # this process; written into every status.json it writes
INTERRUPTED = "The app restarted during this run. Its last checkpoint is kept."
INTERRUPTED_EARLY = "The app restarted during this run, before it saved a checkpoint."
_slug = re.compile(r"[^A-Za-z0-9_-]+")
log = logging.getLogger("adapter_studio")


def visible(item_owner: str | None, owner: str | None) -> bool:
    """Owner None (local mode) sees everything; an owner sees only what is theirs."""
    return owner is None or item_owner == owner


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

    @property
    def owner(self) -> str | None:
        """Who started the run (None: local mode, or a status.json that cannot be read)."""
        return (_read_json(self.dir / "status.json") or {}).get("owner")

    @property
    def resumable(self) -> bool:
        """A checkpoint to go on from is there: the run stopped, or was interrupted, after an evaluation."""
        return (self.dir / "checkpoint" / "state.json").is_file()

    @property
    def checkpoint_step(self) -> int | None:
        """The step a resume goes on from (None: no readable checkpoint)."""
        step = (_read_json(self.dir / "checkpoint" / "state.json") or {}).get("step")
        return step if isinstance(step, int) else None

    def config(self) -> dict[str, Any]:
        return _read_json(self.dir / "config.json") or {}

    def train_config(self) -> TrainConfig:
        """The run's settings as they were given: those the plan chose (listed in `auto`) are auto again,
        so that a resumed run plans them as the first start did."""
        from .config import TrainConfig  # the config pulls in the engine; a run listing needs none of it

        saved = self.config()
        auto = saved.pop("auto", None)
        for key in auto if isinstance(auto, list) else []:
            if key in ("batch_size", "epochs", "lr"):
                saved[key] = None
        return TrainConfig.from_dict(saved)

    def status(self) -> dict[str, Any]:
        """The saved status; a run left active by an earlier process (an app restart) reads as `interrupted`."""
        status = _read_json(self.dir / "status.json") or {"status": "unknown"}
        if status.get("status") in ACTIVE and not _written_here(status):
            status = {
                **status,
                "status": "interrupted",
                "message": INTERRUPTED if self.has_adapter else INTERRUPTED_EARLY,
            }
        return status

    def set_status(self, status: str, **fields: Any) -> None:
        current = _read_json(self.dir / "status.json") or {}
        write_json_atomic(
            self.dir / "status.json",
            {**current, **fields, "status": status, "boot": BOOT_ID, "pid": os.getpid(), "updated": time.time()},
        )

    def append_event(self, event: dict[str, Any]) -> None:
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def events(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(event, dict) and "kind" in event:
                out.append(event)
        return out


class RunRecorder:
    """Records a run's events in its folder: each one appended to metrics.jsonl, and status.json kept in
    step with the status events and the final `done` event (its metrics, steps and times)."""

    def __init__(self, run: Run):
        self.run = run

    def __call__(self, event: Event | dict[str, Any]) -> dict[str, Any]:
        """Record `event`; returns it as the dict that was written."""
        data = event if isinstance(event, dict) else event.to_dict()
        self.run.append_event(data)
        status = data.get("status")
        if data["kind"] == "status" and status:
            self.run.set_status(status, message=data.get("message"))
        elif data["kind"] == "done" and status:
            info = data.get("info") or {}
            self.run.set_status(
                status,
                message=None,
                finished=time.time(),
                metrics=data.get("metrics") or {},
                steps=data.get("step"),
                train_seconds=data.get("elapsed_s"),
                examples_per_sec=data.get("examples_per_sec"),
                **{k: info[k] for k in ("trainable", "stopped_early") if k in info},
            )
        return data


class RunStore:
    """Run folders under `home/runs`, each named by its start time and name. With `root` instead, the run
    folders are `root/<name>` exactly (the CLI's sweep: OUT/<run>), and a new run replaces an old run of
    its name there."""

    def __init__(self, home: str | Path | None = None, root: str | Path | None = None):
        self.named = root is not None
        self.root = Path(root) if root is not None else Path(home or studio_home()) / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def create(self, name: str, config: dict[str, Any], owner: str | None = None, group: str | None = None) -> Run:
        with self._lock:
            path = self._new_folder(name)
            path.mkdir(parents=True)
        run = Run(path)
        try:
            write_json_atomic(path / "config.json", config)
            run.set_status("queued", created=time.time(), owner=owner, **({"group": group} if group else {}))
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # no half-made run in the list
            raise
        return run

    def _new_folder(self, name: str) -> Path:
        stem = _slug.sub("-", name).strip("-")[:80] or "run"
        if self.named:
            path = self.root / stem
            if (path / "config.json").is_file():  # an earlier run of this name: the new one replaces it
                shutil.rmtree(path)
            elif path.exists():
                raise AdapterError(f"{path.name} in {self.root.name} is in the way of a run of that name; move it.")
            return path
        stem = time.strftime("%Y%m%d-%H%M%S") + "-" + stem
        path, n = self.root / stem, 1
        while path.exists():
            n += 1
            path = self.root / f"{stem}-{n}"
        return path

    def list(self, owner: str | None = None) -> list[Run]:
        """Every run `owner` may see, newest first. A run folder that cannot be read is left out (and logged)."""
        runs, unreadable = self._scan()
        for name in unreadable:
            log.warning("Skipping run folder %s: its config.json or status.json cannot be read", name)
        return [run for run, run_owner in runs if visible(run_owner, owner)]

    def unreadable(self) -> list[str]:
        """The run folders that `list` leaves out because their config.json or status.json is damaged."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[tuple[Run, str | None]], list[str]]:
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
        except OSError:
            log.exception("Cannot list the run store")
            return [], []
        runs, unreadable = [], []
        for path in sorted(folders, key=lambda p: p.name, reverse=True):
            config, status = _read_json(path / "config.json"), _read_json(path / "status.json")
            if config is None or status is None or not isinstance(status.get("status"), str):
                unreadable.append(path.name)
            else:
                runs.append((Run(path), status.get("owner")))
        return runs, unreadable

    def get(self, run_id: str, owner: str | None = None) -> Run:
        """The run `run_id`, if `owner` may see it; otherwise the same error as for a run that does not exist."""
        missing = AdapterError(f"No run {str(run_id)[:100]!r} for you.")
        if not isinstance(run_id, str) or not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise missing
        run = Run(self.root / run_id)
        if not (run.dir / "config.json").is_file() or not visible(run.owner, owner):
            raise missing
        return run

    def delete(self, run_id: str, owner: str | None = None) -> None:
        shutil.rmtree(self.get(run_id, owner).dir)


def _written_here(status: dict[str, Any]) -> bool:
    # The boot id decides; the pid only guards against a status copied between processes of one boot
    # (a fork), so a pid match alone never makes a run look alive.
    return status.get("boot") == BOOT_ID and status.get("pid") == os.getpid()


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable, cut short or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON and bad UTF-8 alike
        return None
    return data if isinstance(data, dict) else None
