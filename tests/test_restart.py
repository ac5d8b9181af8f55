"""A real restart: a training process is killed outright (SIGKILL, as when a Space restarts), and a new
process finds the run `interrupted` with its last checkpoint loadable."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, ROUTING

from adapter_core import classify
from adapter_core.engine.evaluation import load_with_base
from adapter_core.engine.runs import BOOT_ID, RunStore

pytestmark = pytest.mark.slow  # the complete tier: a training process killed mid-run

TRAINER = f"""
from adapter_core.engine.jobs import JobManager
from adapter_core.engine.train import TrainConfig

manager = JobManager()
job = manager.submit(
    TrainConfig(base="minilm", data={ROUTING!r}, name="r", epochs=50, eval_every=2, max_length=32, batch_size=16)
)
print(job.id, flush=True)
job.finished.wait(600)
"""

READER = """
import json
from adapter_core.engine.runs import BOOT_ID, RunStore

print(json.dumps({"boot": BOOT_ID, "runs": [{"id": r.id, **r.status()} for r in RunStore().list()]}))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_training_process_leaves_an_interrupted_run_with_a_loadable_checkpoint(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ADAPTER_STUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    with open(tmp_path / "trainer.out", "w") as out, open(tmp_path / "trainer.err", "w") as err:
        child = subprocess.Popen([sys.executable, "-c", TRAINER], env=env, cwd=ROOT, stdout=out, stderr=err)
        try:
            runs = home / "runs"
            deadline = time.time() + 180
            while True:
                assert child.poll() is None, (
                    f"the trainer ended early:\n{(tmp_path / 'trainer.err').read_text()[-3000:]}"
                )
                assert time.time() < deadline, "no checkpoint within 180 s"
                folders = list(runs.glob("*/adapter/adapter_config.json")) if runs.is_dir() else []
                if folders:
                    run_dir = folders[0].parents[1]
                    status = json.loads((run_dir / "status.json").read_text())
                    if status["status"] == "training":
                        break
                time.sleep(0.1)
            child.send_signal(signal.SIGKILL)  # no atexit, no finally: like a container that is torn down
            assert child.wait(30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    killed = json.loads((run_dir / "status.json").read_text())
    assert killed["status"] == "training" and killed["boot"] != BOOT_ID  # as the dead process left it

    # A new process (a restarted app) reads it as interrupted.
    reader = subprocess.run(
        [sys.executable, "-c", READER], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert reader.returncode == 0, reader.stderr[-3000:]
    seen = json.loads(reader.stdout.strip().splitlines()[-1])
    assert seen["boot"] != killed["boot"]
    [listed] = seen["runs"]
    assert listed["id"] == run_dir.name and listed["status"] == "interrupted"
    assert listed["message"] == "The app restarted during this run. Its last checkpoint is kept."

    # So does this process, and the CLI.
    [run] = RunStore(home).list()
    assert run.status()["status"] == "interrupted" and run.has_adapter
    listing = subprocess.run(
        [sys.executable, "-m", "adapter_core", "runs"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0 and run_dir.name in listing.stdout and "interrupted" in listing.stdout

    # The last checkpoint loads and classifies.
    meta = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert meta["training"]["status"] in ("running", "completed") and meta["training"]["step"] >= 2
    base, name = load_with_base(run_dir)
    assert name == "r"
    [prediction] = classify(base.model, base.tokenizer, ["I was charged twice for my order"], name)
    assert prediction.label in {"billing", "orders", "tech"} and 0 < prediction.confidence <= 1
