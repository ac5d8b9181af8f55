"""ZeroGPU, emulated on the real `spaces` package: only what needs Hugging Face's infrastructure is replaced.

What is real: `spaces.GPU`'s wrappers, so each decorated call really forks a worker process (reused
while idle), its arguments, results and each yield really cross as pickles, a refused lease raises the
package's own error with its own message, and the visitor is read from the request's `X-IP-Token`.

What is replaced:
- the scheduler's HTTP client (`schedule`, `allow`, `release`, `startup_report`), by `Scheduler`: a
  per-visitor daily quota (a lease's duration is held from it while it runs, and a lease that does not fit is
  refused, as ZeroGPU refuses it; at release the time used is charged and the rest given back), a ledger of
  every lease (who, when, how long, asked for how long) in a JSON-lines file, and a watchdog that kills
  the worker of a lease that runs past its duration, as ZeroGPU aborts it;
- with a CPU build of torch, the CUDA packing module (`spaces.zero.torch`, which needs a CUDA build): a
  worker trains on the CPU. With a CUDA build and no GPU (`fake_cuda_driver`), the package's own patches
  run in the main process as on a Space, and only a worker's GPU start and tensor moves are replaced.

What it adds: a CUDA build's failure that a CPU build cannot show. On a Space, a training pass in the
main process reaches the CUDA driver below `spaces`' patches, and breaks CUDA for every worker forked
after it (seen on an H200: bench/RESULTS.md, "On a GPU"). With a CUDA build, the fake driver records
each process that starts it, and the tests assert the main process never did. With a CPU build, a
backward pass or an optimizer step in the main process raises instead (`_no_training_in_the_parent`).

What it cannot prove: real CUDA in the workers (the GPU bench does, when a GPU machine is lent), the
scheduler's queueing when every GPU is busy, real JWT expiry, and Hugging Face's quota figures and
accounting (the time used charged at release is what ZeroGPU's users report, not a documented rule).

Use: `install(ledger, quotas)` before anything imports torch or `studio` (as app.py's first lines do on
a Space), in a process of its own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import types
import uuid
from datetime import timedelta
from pathlib import Path

import fake_cuda_driver

API_URL = "http://zerogpu.emulated"
ANONYMOUS = "anonymous"  # the visitor of a request without a token


def ip_token(visitor: str) -> str:
    """An `X-IP-Token` as Spaces' proxy sets it: a JWT whose payload names the visitor (unsigned here)."""
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part({'alg': 'none'})}.{part({'user': visitor, 'exp': time.time() + 180})}.sig"


def read_ledger(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def leases(path: str | Path) -> list[dict]:
    """Each lease that ran: visitor, requested seconds, start, end, and whether it was aborted."""
    events = read_ledger(path)
    ended = {e["token"]: e for e in events if e["event"] in ("release", "abort")}
    out = []
    for e in events:
        if e["event"] == "schedule" and e["token"] in ended:
            end = ended[e["token"]]
            out.append(
                {**e, "end": end["time"], "aborted": end["event"] == "abort", "seconds": end["time"] - e["time"]}
            )
    return out


class Scheduler:
    """Stands in for `spaces.zero.api.APIClient`: the same methods and return types, no network."""

    def __init__(self, ledger: Path, quotas: Path | None, default_quota: float):
        """`quotas`: a JSON file {visitor: {"seconds": a day's GPU, "leases": how many}}, read at each lease
        (a test may change it)."""
        self.ledger, self.quotas, self.default_quota = ledger, quotas, default_quota
        self.used: dict[str, float] = {}
        self.leases: dict[str, int] = {}
        self.open: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.gpu = "emulated"  # the GPU a lease names; its worker sets CUDA_VISIBLE_DEVICES to it

    def _write(self, **event) -> None:
        with open(self.ledger, "a") as f:  # both the parent and its forked workers append
            f.write(json.dumps({**event, "time": time.time(), "pid": os.getpid()}) + "\n")

    def startup_report(self):
        import httpx

        return httpx.codes.OK

    def schedule(self, cgroup_path, task_id=0, token=None, token_version=1, duration_seconds=None, **_):
        from spaces.zero.api import QuotaInfos, ScheduleMetadata, ScheduleResponse
        from spaces.zero.utils import jwt_payload

        visitor = jwt_payload(token).get("user", ANONYMOUS) if token else ANONYMOUS
        duration = float(duration_seconds or 60)
        quotas = json.loads(self.quotas.read_text()) if self.quotas and self.quotas.is_file() else {}
        quota = {"seconds": self.default_quota, "leases": None, **quotas.get(visitor, {})}
        with self.lock:
            left = quota["seconds"] - self.used.get(visitor, 0.0)
            runs_left = quota["leases"] is None or self.leases.get(visitor, 0) < quota["leases"]
            if duration > left or not runs_left:  # wait 0: the package words it as the runs limit
                self._write(event="refused", visitor=visitor, requested=duration, left=left)
                wait = timedelta(minutes=15) if runs_left else timedelta(0)
                return QuotaInfos(left=int(left), wait=wait), ScheduleMetadata(auth=None)
            self.leases[visitor] = self.leases.get(visitor, 0) + 1
            allow = uuid.uuid4().hex
            # Held while the lease runs (spaces words a refusal of held time as "credits allocated to running
            # tasks"); the release charges the time used instead, as a Space's visitors see it.
            self.used[visitor] = self.used.get(visitor, 0.0) + duration
            self.open[allow] = {"visitor": visitor, "start": time.time(), "requested": duration}
            self._write(event="schedule", token=allow, visitor=visitor, requested=duration, thread=_in_request())
        threading.Thread(target=self._watch, args=(allow, duration), daemon=True).start()
        return ScheduleResponse(idle=True, nvidiaIndex=0, nvidiaUUID=self.gpu, allowToken=allow), ScheduleMetadata()

    def allow(self, allow_token: str, pid: int):
        import httpx

        self._write(event="allow", token=allow_token, worker=pid)  # in the forked worker
        return httpx.codes.OK

    def release(self, allow_token: str, fail: bool = False):
        import httpx

        with self.lock:
            lease = self.open.pop(allow_token, None)
            if lease is None:
                return httpx.codes.NOT_FOUND
            held, took = lease["requested"], min(lease["requested"], time.time() - lease["start"])
            self.used[lease["visitor"]] -= held - took
            self._write(event="release", token=allow_token, visitor=lease["visitor"], fail=fail)
        return httpx.codes.OK

    def _watch(self, allow: str, duration: float) -> None:
        """ZeroGPU aborts a lease that runs past its duration: its worker dies."""
        time.sleep(duration)
        with self.lock:
            if allow not in self.open:
                return
            self.open.pop(allow)
            worker = next(
                (e["worker"] for e in read_ledger(self.ledger) if e.get("token") == allow and "worker" in e), None
            )
            self._write(event="abort", token=allow)
        if worker:
            os.kill(worker, signal.SIGKILL)


def _in_request() -> bool:
    """Whether the current code runs inside a Gradio request (what leases a visitor's quota)."""
    from gradio.context import LocalContext

    return LocalContext.request.get(None) is not None


def _gpu_uuid() -> str:
    """The machine's first GPU as the real scheduler names it, read without touching CUDA in this process
    (the parent of a ZeroGPU Space never initialises CUDA: its forked workers could not use it)."""
    import subprocess

    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[0]


def _no_training_in_the_parent() -> None:
    """A backward pass or an optimizer step in this process, not in its forked workers, raises. With a CUDA
    build under `spaces`, torch's optimizer asks the current CUDA stream whether it is being captured
    (torch >= 2.11), and the autograd engine counts the devices of each device type it knows: both reach
    the CUDA runtime, which `spaces` does not intercept."""
    import torch

    parent = os.getpid()

    def guard(original, what: str):
        def guarded(*args, **kwargs):
            if os.getpid() == parent:
                raise RuntimeError(f"{what} in a ZeroGPU Space's main process would start CUDA there.")
            return original(*args, **kwargs)

        return guarded

    torch.autograd.backward = guard(torch.autograd.backward, "A backward pass")
    optimizer = torch.optim.Optimizer
    check = "_accelerator_graph_capture_health_check"  # every optimizer step calls it (the torch pinned here)
    setattr(optimizer, check, guard(getattr(optimizer, check), "An optimizer step"))


def install(
    ledger: str | Path, quotas: str | Path | None = None, default_quota: float = 3600.0, real_cuda: bool = False
) -> Scheduler:
    """Make this process a ZeroGPU Space's: the real `spaces`, its scheduler (and, without `real_cuda`, its
    CUDA packing) replaced. `real_cuda` keeps the package's own packing: a GPU machine's workers use CUDA."""
    os.environ["SPACES_ZERO_GPU"] = "true"
    if real_cuda:  # torch's own availability check through NVML: a CUDA runtime check here would break every fork
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    os.environ["SPACES_ZERO_DEVICE_API_URL"] = API_URL
    cuda_build = fake_cuda_driver.cuda_build()
    if not real_cuda and not cuda_build:
        packing = types.ModuleType("spaces.zero.torch")
        for name in ("patch", "unpatch", "init", "move", "enter_mode"):
            setattr(packing, name, lambda *a, **k: None)
        packing.pack = packing.size = lambda *a, **k: 0
        packing.is_in_bad_fork = lambda *a, **k: False
        sys.modules["spaces.zero.torch"] = packing
    import spaces  # noqa: F401  (the real package, as app.py imports it first on a Space)
    from spaces.zero import client

    if cuda_build and not real_cuda:  # the package's own patches here; a worker has no GPU to start or fill
        from spaces.zero import torch as packing

        packing.init = packing.move = lambda *a, **k: None
    else:  # a clearer failure than a broken fork: raise where a CUDA build would start the driver
        _no_training_in_the_parent()

    scheduler = Scheduler(Path(ledger), Path(quotas) if quotas else None, default_quota)
    if real_cuda:
        scheduler.gpu = _gpu_uuid()
    client.api_client = lambda: scheduler
    return scheduler
