"""The CLI's exit and error policy: every failure is one line `error: ...` on stderr and a non-zero exit,
never a traceback (ADAPTER_STUDIO_DEBUG=1 logs the traceback of an unexpected failure as well)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from ..errors import AdapterError

OK = 0
FAILED = 1  # an OS error on the user's paths, or a bug
USER_ERROR = 2  # a setting, a file or a folder the user gave is wrong (argparse's code for bad arguments too)
INTERRUPTED = 130  # Ctrl-C, as shells count it

log = logging.getLogger("adapter_studio")


def setup_logging() -> bool:
    """The library logs to `adapter_studio`; the CLI shows those records only with ADAPTER_STUDIO_DEBUG=1
    (otherwise its one `error:` line says what went wrong). Returns whether debug mode is on."""
    debug = os.environ.get("ADAPTER_STUDIO_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    for handler in [h for h in log.handlers if getattr(h, "adapter_studio_cli", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr) if debug else logging.NullHandler()
    handler.adapter_studio_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if debug:
        log.setLevel(logging.DEBUG)
    return debug


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace, debug: bool) -> int:
    """Run one command under the policy: an AdapterError is the user's to fix (exit 2), an OS error names
    the path (exit 1), anything else is a bug to report (exit 1)."""
    try:
        return command(args)
    except AdapterError as e:
        error(str(e))
        return USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except OSError as e:  # the user's own paths: naming them helps
        if debug:
            log.exception("OS error")
        error(os_message(e))
        return FAILED
    except Exception as e:
        if debug:
            log.exception("Unexpected failure")
        error(f"unexpected failure ({reason(e)}); please report it")
        return FAILED


def one_line(text: object) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)


def reason(e: BaseException, limit: int = 200) -> str:
    text = one_line(str(e))
    said = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return said if len(said) <= limit else said[: limit - 3] + "..."


def os_message(e: OSError) -> str:
    said = e.strerror or one_line(str(e)) or type(e).__name__
    return f"cannot use {e.filename}: {said}" if e.filename else said


def folder_error(what: str, value: str, e: OSError) -> AdapterError:
    """A run or sweep folder that cannot be written, in words."""
    return AdapterError(f"Cannot write the {what} folder {value}: {e.strerror or one_line(str(e))}.")
