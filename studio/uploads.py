"""Adapter files crossing the server's edge: names, uploads checked before anything is trusted, and
metadata cleaned of server paths before it is published or downloaded.

A zip is read member by member in chunks, with caps on the member count, each member's size and its
compression ratio, so a small archive can never make the server read gigabytes. Its unpacked size is
what counts against a quota: read from the zip's directory before anything is extracted
(`unpacked_size`), and held to while extracting, whatever the directory claimed. The config is checked
against the schema and the studio's caps, and the safetensors header against the config, before the
adapter reaches the library. Messages name uploads by their file names only.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from adapter_core import (
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    STATS_FILE,
    WEIGHTS_FILE,
    AdapterConfig,
    AdapterError,
    check_weights_match,
    path_tail,
    read_meta_file,
    read_safetensors_header,
    read_stats,
)

ALLOWED_UPLOADS = {".json", ".safetensors", ".zip"}
ADAPTER_MEMBERS = (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE)  # what an upload, a zip or a pull may bring
CHUNK = 2**20
RATIO_FLOOR = 2**20  # members smaller than this are never refused for their compression ratio
# Zip caps when the caller gives no limits: those of local mode (studio.policy.Policy.local()).
DEFAULT_ZIP_ENTRIES, DEFAULT_MEMBER_BYTES, DEFAULT_ZIP_RATIO = 64, 2 * 2**30, 1000.0
MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9 _-]+")
_MB = 2**20


def safe_name(name: str) -> str:
    """A folder-safe adapter name, sanitised silently (for internal names such as a run's): letters,
    digits, spaces, '_' and '-' only, no dots or slashes."""
    cleaned = _UNSAFE.sub("-", str(name)).strip(" -_")[:MAX_NAME].strip(" -_")
    if not cleaned:
        raise AdapterError(f"{name!r} is not a usable adapter name; use letters, digits, spaces, '_' or '-'.")
    return cleaned


def check_name(name: str) -> str:
    """A name a visitor typed, as it is (surrounding spaces aside), or a clear error; never rewritten."""
    text = str(name or "").strip()
    if not text:
        raise AdapterError("Type a name for the adapter.")
    if len(text) > MAX_NAME:
        raise AdapterError(f"Adapter names are at most {MAX_NAME} characters; {text[:24] + '...'!r} has {len(text)}.")
    bad = list(dict.fromkeys(c for c in text if _UNSAFE.match(c)))
    if bad:
        shown = [repr(c) for c in bad[:6]]
        listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        raise AdapterError(f"Adapter names may use letters, digits, spaces, '_' and '-'; {text!r} has {listed}.")
    if not text[0].isascii() or not text[0].isalnum():
        raise AdapterError(f"Adapter names start with a letter or digit; {text!r} does not.")
    return text


def _file_name(value: Any) -> Any:
    """A path's last component; anything else unchanged."""
    return PurePosixPath(value.replace("\\", "/")).name if isinstance(value, str) and value else value


def clean_meta(meta: dict[str, Any], name: str, for_download: bool = False) -> dict[str, Any]:
    """Metadata fit to publish: `name` set, no owner, the training data files by name only. For a
    download, a base model given as a server path keeps only its folder's name too."""
    meta = json.loads(json.dumps(meta))
    meta["name"] = name
    meta.pop("owner", None)
    train_config = meta.get("train_config")
    if isinstance(train_config, dict):
        for key in ("data", "val_data"):
            train_config[key] = _file_name(train_config.get(key))
    if for_download:
        if "base_model" in meta:
            meta["base_model"] = path_tail(meta["base_model"])
        if "name_or_path" in meta["base"]:
            meta["base"]["name_or_path"] = path_tail(meta["base"]["name_or_path"])
    return meta


def stage_upload(
    files: list[str | Path], folder: Path, limits: Any = None, max_bytes: int | None = None
) -> dict[str, Any]:
    """Put the uploaded adapter's files (config, weights, a router's statistics) into `folder`, checked;
    return its (checked) metadata.

    `limits` has `max_bottleneck`, `max_labels`, `max_zip_entries`, `max_member_bytes` and
    `max_zip_ratio` (a studio.policy.Policy); None applies only the core checks and local zip caps.
    `max_bytes`: the most the staged files may take together (the room left in a quota)."""
    files = _checked_types(files)
    max_member = getattr(limits, "max_member_bytes", DEFAULT_MEMBER_BYTES)
    budget = _Budget(max_bytes)
    for f in files:
        try:
            if f.suffix.lower() == ".zip":
                extract_adapter(f, folder, limits, budget)
                continue
            target = folder / (CONFIG_FILE if f.suffix.lower() == ".json" else _safetensors_role(f.name))
            _refuse_second(target, "The upload")
            cap = MAX_CONFIG_BYTES if target.name == CONFIG_FILE else max_member
            size = f.stat().st_size
            if size > cap:
                raise AdapterError(f"{f.name} is {_size(size)}; the limit is {_size(cap)}.")
            budget.add(size)
            shutil.copyfile(f, target)
        except OSError as e:  # the message names the file, never the server folder it sits in
            raise AdapterError(f"{f.name} could not be read ({e.strerror or type(e).__name__}).") from None
    for needed in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / needed).is_file():
            raise AdapterError(
                f"The upload is not an adapter: {needed} is missing. Upload adapter_config.json and "
                "adapter_model.safetensors, or a .zip of an adapter folder."
            )
    meta = read_meta_file(folder / CONFIG_FILE, source=CONFIG_FILE)
    _check_caps(meta, limits)
    check_weights_match(meta, read_safetensors_header(folder / WEIGHTS_FILE))
    if (folder / STATS_FILE).is_file():  # a router's out-of-scope statistics, read as the library reads them
        if meta["task"] != "classification":
            raise AdapterError(f"{STATS_FILE} belongs to a router; this adapter is {meta['task']}.")
        read_stats(folder / STATS_FILE, meta["base"]["hidden_size"], len(meta["labels"]))
    return meta


def _safetensors_role(name: str) -> str:
    """A loose safetensors upload is the weights, or the router's statistics when it is named so."""
    return STATS_FILE if name == STATS_FILE else WEIGHTS_FILE


def unpacked_size(files: list[str | Path], limits: Any = None) -> int:
    """The bytes an upload puts in the library: its files, or the adapter members of a zip as its
    directory declares them (checked against the member caps first, so a bomb is named as one)."""
    total = 0
    for f in _checked_types(files):
        try:
            if f.suffix.lower() != ".zip":
                total += f.stat().st_size
                continue
            with zipfile.ZipFile(f) as z:
                for info in _adapter_members(z, f.name, limits):
                    _check_declared(info, _base(info.filename), limits, f.name)
                    total += info.file_size
        except AdapterError:
            raise
        except OSError as e:
            raise AdapterError(f"{f.name} could not be read ({e.strerror or type(e).__name__}).") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
            raise AdapterError(f"{f.name} is not a valid zip file, or it is damaged or encrypted.") from None
    return total


class _Budget:
    """Bytes written so far against a cap (None: no cap), for the quota message."""

    def __init__(self, cap: int | None):
        self.cap, self.used = cap, 0

    def add(self, n: int) -> None:
        self.used += n
        if self.cap is not None and self.used > self.cap:
            raise AdapterError(
                f"This upload unpacks to more than {_size(self.cap)}, the room left in your library. "
                "Delete an adapter first, or upload a smaller one."
            )


def _checked_types(files: list[str | Path] | None) -> list[Path]:
    files = [Path(f) for f in files or []]
    if not files:
        raise AdapterError("Choose the adapter's files first: adapter_config.json and adapter_model.safetensors.")
    bad = [f.name for f in files if f.suffix.lower() not in ALLOWED_UPLOADS]
    if bad:
        raise AdapterError(f"Only adapter_config.json, adapter_model.safetensors or a .zip of them; got {bad}.")
    return files


def _check_caps(meta: dict[str, Any], limits: Any) -> None:
    if limits is None:
        return
    r = AdapterConfig.from_dict(meta["config"]).bottleneck_for(meta["base"]["hidden_size"])
    if r > limits.max_bottleneck:
        raise AdapterError(
            f"This adapter's bottleneck is {r:,}; this studio accepts at most {limits.max_bottleneck:,}."
        )
    labels = meta.get("labels") or []
    if len(labels) > limits.max_labels:
        raise AdapterError(
            f"This adapter has {len(labels):,} labels; this studio accepts at most {limits.max_labels:,}."
        )


def _size(n: float) -> str:
    return f"{n / _MB:,.1f} MB" if n >= _MB / 10 else f"{int(n):,} bytes"


def _refuse_second(target: Path, where: str) -> None:
    if target.exists():
        raise AdapterError(f"{where} holds two {target.name} files; upload one adapter at a time.")


def extract_adapter(archive: Path, folder: Path, limits: Any = None, budget: _Budget | None = None) -> None:
    """Take the adapter's files (and a router's statistics) out of a zip by their base names only: no paths,
    no other files, each streamed in chunks and stopped past the size and ratio caps (and `budget`)."""
    try:
        with zipfile.ZipFile(archive) as z:
            for info in _adapter_members(z, archive.name, limits):
                target = folder / _base(info.filename)
                _refuse_second(target, archive.name)
                _copy_member(z, info, target, limits, archive.name, budget or _Budget(None))
    except AdapterError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
        raise AdapterError(f"{archive.name} is not a valid zip file, or it is damaged or encrypted.") from None


def _adapter_members(z: zipfile.ZipFile, where: str, limits: Any) -> list[zipfile.ZipInfo]:
    """The zip's adapter files, after the checks on its directory: how many members, none twice."""
    entries = getattr(limits, "max_zip_entries", DEFAULT_ZIP_ENTRIES)
    infos = z.infolist()
    if len(infos) > entries:
        raise AdapterError(f"{where} holds {len(infos):,} files; the limit is {entries}.")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise AdapterError(f"{where} holds the same file twice; it is not a valid adapter zip.")
    picked = [i for i in infos if not i.is_dir() and _base(i.filename) in ADAPTER_MEMBERS]
    if not picked:
        raise AdapterError(f"{where} holds no adapter files: it needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    return picked


def _base(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).name


def _check_declared(info: zipfile.ZipInfo, name: str, limits: Any, where: str, size: int | None = None) -> None:
    """A member's size (as declared, or as read so far) against its cap and the compression-ratio cap."""
    cap = MAX_CONFIG_BYTES if name == CONFIG_FILE else getattr(limits, "max_member_bytes", DEFAULT_MEMBER_BYTES)
    ratio = getattr(limits, "max_zip_ratio", DEFAULT_ZIP_RATIO)
    size = info.file_size if size is None else size
    if size > RATIO_FLOOR and size > ratio * max(info.compress_size, 1):
        raise AdapterError(f"{where}: {name} unpacks over {ratio:g} times its packed size; this looks like a zip bomb.")
    if size > cap:
        raise AdapterError(f"{where}: {name} is over {_size(cap)} unpacked; that is the limit.")


def _copy_member(
    z: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limits: Any, where: str, budget: _Budget
) -> None:
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise AdapterError(f"{where}: {target.name} uses an unsupported compression; zip it with deflate.")
    _check_declared(info, target.name, limits, where)  # what the zip claims; the stream is checked as read
    size = 0
    with z.open(info) as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            _check_declared(info, target.name, limits, where, size)
            budget.add(len(chunk))
            dst.write(chunk)
