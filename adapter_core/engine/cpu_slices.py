"""Slices on the CPU in a process of their own: for a ZeroGPU run whose slice no GPU call took (its
visitor left, having chosen the CPU before Start, or their quota ran out).

Why not in the studio's own process: there, `spaces` has made torch believe in a GPU, and a training
pass reaches the CUDA runtime below its patches. Seen on an H200 with torch 2.11: the optimizer's step
asks the current CUDA stream whether it is being captured, which fails at once where the process has no
GPU and, where it has one, starts CUDA, after which every GPU worker forked from the process fails with
"CUDA error: initialization error". So the main process of a ZeroGPU Space never takes a training step:
a fresh interpreter, started with no GPU visible and without `spaces`, takes them, and keeps its base
loaded for the next slice (`slices._BASES`) until it has been idle for `IDLE_SECONDS`. Specs and results cross as pickles over a socket pair
that only the two processes hold (`multiprocessing.connection`); a slice's stop file reaches it as it
reaches a GPU worker. Plain pickles, not `Connection.send`'s: with torch imported, that one would share
tensors through file descriptors that only processes started by `multiprocessing` may claim.

    python -m adapter_core.engine.cpu_slices FD   (the studio starts it, with FD its end of the pair)
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from ..errors import AdapterError
from .slices import SliceResult, SliceSpec, run_slice


class CpuSliceError(RuntimeError):
    """The CPU process could not run a slice; the message says why, in words."""


IDLE_SECONDS = 300.0  # a process with no slice for this long ends, and its loaded base with it


class CpuSliceProcess:
    """One process that runs slices on the CPU, one at a time, started at the first slice and ended after
    `idle_seconds` without one (a shared Space should not hold a loaded base for a run that has ended)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._idle, self._last = idle_seconds, 0.0

    def run(self, spec: SliceSpec) -> SliceResult:
        try:
            return self._run(spec)
        finally:
            self._last = time.monotonic()
            timer = threading.Timer(self._idle, self._end_if_idle)
            timer.daemon = True
            timer.start()

    def _end_if_idle(self) -> None:
        with self._lock:  # never while a slice runs: `_run` holds it
            if time.monotonic() - self._last >= self._idle:
                self._close()

    def _run(self, spec: SliceSpec) -> SliceResult:
        with self._lock:
            conn = self._connect()
            try:
                conn.send_bytes(pickle.dumps(spec))
                while not conn.poll(1.0):  # a dead child is seen even if a fork elsewhere holds its socket
                    if self._proc.poll() is not None:
                        raise EOFError
                ok, value = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError) as e:
                self._close()
                raise CpuSliceError("the CPU training process stopped; resume the run from Past runs.") from e
        if not ok:
            raise CpuSliceError(value)
        return value

    def _connect(self) -> Connection:
        if self._conn is not None and self._proc is not None and self._proc.poll() is None:
            return self._conn
        self._close()
        ours, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if k != "SPACES_ZERO_GPU"}
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, whatever this machine has
        package_root = Path(__file__).resolve().parents[2]
        if package_root.name not in ("site-packages", "dist-packages"):  # a checkout, wherever the studio started
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), env.get("PYTHONPATH")]))
        with theirs:
            fd = theirs.fileno()
            self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(fd)], pass_fds=(fd,), env=env)
        self._conn = Connection(ours.detach())
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = self._conn = None


_PROCESS = CpuSliceProcess()


def run_on_cpu(spec: SliceSpec) -> SliceResult:
    """`spec` run on the CPU in the slices' own process (see the module's docstring)."""
    return _PROCESS.run(spec)


def serve(fd: int) -> None:
    """The CPU process: run each slice it is sent, send back (True, result) or (False, what failed, in
    words); the details of a failure go to this process's stderr (the Space's log)."""
    with Connection(fd) as conn:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:  # the studio ended
                return
            try:
                reply = (True, run_slice(pickle.loads(message)))
            except AdapterError as e:  # a message written for users
                reply = (False, str(e))
            except Exception:  # noqa: BLE001 (the run pauses with it; the details go to the log)
                traceback.print_exc()
                reply = (False, "training on the CPU failed; the details are in the studio's log.")
            conn.send_bytes(pickle.dumps(reply))


if __name__ == "__main__":
    serve(int(sys.argv[1]))
