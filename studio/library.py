"""The adapter library: one folder per named adapter under `$ADAPTER_STUDIO_HOME/adapters`.

Finished runs publish their adapter here; users rename, delete, download (zip) and upload them.
Uploads accept only JSON and safetensors, and every name is sanitised against path traversal.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter_core.atomic import replace_dir, write_json_atomic
from adapter_core.errors import AdapterError
from adapter_core.io import CONFIG_FILE, WEIGHTS_FILE, read_adapter_config
from adapter_core.paths import studio_home

ALLOWED_UPLOADS = {".json", ".safetensors", ".zip"}
CURVE_FILE = "metrics.jsonl"  # the training curve, kept beside a published adapter for Compare
_UNSAFE = re.compile(r"[^A-Za-z0-9 _-]+")


def safe_name(name: str) -> str:
    """A folder-safe adapter name: letters, digits, spaces, '_' and '-' only, no dots or slashes."""
    cleaned = _UNSAFE.sub("-", str(name)).strip(" -_")[:64]
    if not cleaned:
        raise AdapterError(f"{name!r} is not a usable adapter name; use letters, digits, spaces, '_' or '-'.")
    return cleaned


@dataclass
class Entry:
    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def base(self) -> str:
        return self.meta.get("base_model") or self.meta["base"]["name_or_path"]

    @property
    def training(self) -> dict[str, Any]:
        return self.meta.get("training") or {}

    @property
    def size_bytes(self) -> int:
        return (self.path / WEIGHTS_FILE).stat().st_size

    def curve(self) -> list[dict[str, Any]]:
        path = self.path / CURVE_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @property
    def version(self) -> float:
        """Changes whenever the weights are replaced, so a served copy knows it is stale."""
        return (self.path / WEIGHTS_FILE).stat().st_mtime


class Library:
    def __init__(self, home: str | Path | None = None):
        self.root = Path(home or studio_home()) / "adapters"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        out = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.startswith("."):
                try:
                    out.append(Entry(path.name, path, read_adapter_config(path)))
                except AdapterError:
                    continue  # a foreign folder is not an adapter; leave it alone
        return out

    def get(self, name: str) -> Entry:
        path = self.root / safe_name(name)
        if not path.is_dir():
            raise AdapterError(f"No adapter named {name!r} in the library.")
        return Entry(path.name, path, read_adapter_config(path))

    def names(self, task: str | None = None) -> list[str]:
        return [e.name for e in self.entries() if task is None or e.task == task]

    def publish(self, source: Path, name: str, curve: Path | None = None) -> Entry:
        """Copy an adapter folder (and its run's `curve`, a metrics.jsonl) into the library as `name`
        (made unique), atomically."""
        with self._lock:
            name = self._unique(safe_name(name))
            staging = Path(tempfile.mkdtemp(prefix=".publish.", dir=self.root))
            for f in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copy2(source / f, staging / f)
            curve = curve or source / CURVE_FILE
            if curve.is_file():
                shutil.copy2(curve, staging / CURVE_FILE)
            self._set_name(staging, name)
            replace_dir(staging, self.root / name)
        return self.get(name)

    def rename(self, old: str, new: str) -> Entry:
        with self._lock:
            entry = self.get(old)
            new = safe_name(new)
            if new == entry.name:
                return entry
            if (self.root / new).exists():
                raise AdapterError(f"An adapter named {new!r} already exists; pick another name.")
            entry.path.rename(self.root / new)
            self._set_name(self.root / new, new)
        return self.get(new)

    def delete(self, name: str) -> None:
        with self._lock:
            shutil.rmtree(self.get(name).path)

    def zip(self, name: str, out_dir: Path) -> Path:
        entry = self.get(name)
        target = Path(out_dir) / f"{entry.name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for f in (CONFIG_FILE, WEIGHTS_FILE):
                z.write(entry.path / f, f"{entry.name}/{f}")
        return target

    def upload(self, files: list[str | Path], name: str | None = None) -> Entry:
        """Add an adapter from its two files, or from a zip holding them. Nothing else is accepted."""
        files = [Path(f) for f in files]
        bad = [f.name for f in files if f.suffix.lower() not in ALLOWED_UPLOADS]
        if bad:
            raise AdapterError(f"Only adapter_config.json, adapter_model.safetensors or a .zip of them; got {bad}.")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for f in files:
                if f.suffix.lower() == ".zip":
                    _extract_adapter(f, folder)
                elif f.suffix.lower() == ".json":
                    shutil.copy(f, folder / CONFIG_FILE)
                else:
                    shutil.copy(f, folder / WEIGHTS_FILE)
            meta = read_adapter_config(folder)  # checks both files are there and the JSON is ours
            _check_weights(folder / WEIGHTS_FILE)
            return self.publish(folder, name or meta.get("name") or "uploaded")

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while (self.root / candidate).exists():
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    @staticmethod
    def _set_name(folder: Path, name: str) -> None:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        meta["name"] = name
        write_json_atomic(folder / CONFIG_FILE, meta)


def _extract_adapter(archive: Path, folder: Path) -> None:
    """Take the two adapter files out of a zip by their base names only: no paths, no other files."""
    try:
        with zipfile.ZipFile(archive) as z:
            wanted = {CONFIG_FILE, WEIGHTS_FILE}
            for info in z.infolist():
                base = Path(info.filename).name
                if base in wanted and not info.is_dir():
                    if info.file_size > 2 * 1024**3:
                        raise AdapterError(f"{base} in {archive.name} is too large.")
                    (folder / base).write_bytes(z.read(info))
                    wanted.discard(base)
    except zipfile.BadZipFile:
        raise AdapterError(f"{archive.name} is not a valid zip file.") from None


def _check_weights(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            list(f.keys())
    except Exception as e:
        raise AdapterError(f"{path.name} is not a valid safetensors file ({e}).") from None
