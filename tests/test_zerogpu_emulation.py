"""The emulated ZeroGPU scheduler keeps a visitor's quota as ZeroGPU does: a lease's requested duration must
fit in what is left and is held while the lease runs; its release charges the time it used."""

import json

from spaces.zero.api import QuotaInfos, ScheduleResponse
from zerogpu_emulation import ANONYMOUS, Scheduler, read_ledger


def test_a_released_lease_gives_back_what_it_did_not_use(tmp_path):
    quotas = tmp_path / "quotas.json"
    quotas.write_text(json.dumps({ANONYMOUS: {"seconds": 60}}))
    scheduler = Scheduler(tmp_path / "ledger.jsonl", quotas, default_quota=3600)

    first, _ = scheduler.schedule("cgroup", duration_seconds=40)
    assert isinstance(first, ScheduleResponse)
    held, _ = scheduler.schedule("cgroup", duration_seconds=40)  # 40 s of 60 are held by the first
    assert isinstance(held, QuotaInfos) and held.left == 20

    scheduler.release(first.allowToken)  # used for an instant: the rest of its 40 s comes back
    assert 0 < scheduler.used[ANONYMOUS] < 10
    second, _ = scheduler.schedule("cgroup", duration_seconds=40)
    assert isinstance(second, ScheduleResponse)
    events = [e["event"] for e in read_ledger(tmp_path / "ledger.jsonl")]
    assert events == ["schedule", "refused", "release", "schedule"]
