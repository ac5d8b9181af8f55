"""The service layer's own checks, called directly as a client that skips every gradio component would:
trust boundary for files and models, quotas per owner and for everyone, and bounded resident models."""

import os
import time

import pytest
from studio_fixtures import publish_random

from adapter_core import AdapterConfig, AdapterError
from adapter_core.engine.train import TrainConfig
from studio import downloads
from studio import train_view as h
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio

SAMPLE = str(SAMPLES_DIR / "support_routing.csv")
LABELS = ["billing", "orders", "tech"]


@pytest.fixture
def public(tmp_path):
    studio = Studio(tmp_path / "home", policy=Policy(public=True, max_jobs_per_owner=1, max_queue=2))
    studio.upload_roots = [tmp_path / "uploads"]
    (tmp_path / "uploads").mkdir()
    yield studio
    studio.jobs.close(timeout=60)


def config(**changes) -> TrainConfig:
    settings = {"data": SAMPLE, "name": "run", "max_length": 32, **changes}
    adapter = AdapterConfig(bottleneck=settings.pop("bottleneck", 8))
    return TrainConfig(**settings, adapter=adapter)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 1e9}, "Epochs 1e+09 is over this studio's limit of 20"),
        ({"epochs": float("inf")}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"batch_size": 10**6}, "Batch size 1000000 is over this studio's limit of 128"),
        ({"bottleneck": 10**7}, "Bottleneck 10000000 is over this studio's limit of 1024"),
        ({"max_steps": 10**9}, "Max steps 1000000000 is over this studio's limit of 2000"),
        ({"name": "../../evil"}, "Adapter names may use letters, digits, spaces, '_' and '-'"),
        ({"base": "/etc"}, "serves only these base models"),
        ({"data": "/etc/passwd"}, "Data files come only from your uploads or the bundled samples"),
        ({"data": str(SAMPLES_DIR / ".." / "README.md")}, "Data files come only from your uploads or the bundled"),
    ],
)
def test_submit_refuses_what_the_policy_forbids(public, changes, message):
    with pytest.raises(AdapterError, match=message.replace("(", r"\(").replace("+", r"\+")):
        public.submit(config(**changes), "anon:someone")
    assert public.jobs.jobs() == [] and not any((public.home / "runs").iterdir())


def test_public_runs_are_bounded_and_clamped(public):
    job, notes = public.submit(config(max_length=4096, epochs=20), "anon:a")
    assert job.config.max_length == 512 and notes == [
        "Max length 4096 is more than minilm can take; training uses 512."
    ]
    assert job.config.max_steps == 2000 and job.config.max_seconds == 1800
    assert job.owner == "anon:a"
    public.jobs.stop(job.id)
    public.jobs.wait(job.id, 300)


def test_queue_quotas_per_owner_and_for_everyone(public):
    first, _ = public.submit(config(epochs=20), "anon:a")
    with pytest.raises(AdapterError, match=r"You already have 1 runs queued or running \(the limit is 1\)"):
        public.submit(config(epochs=20), "anon:a")
    second, _ = public.submit(config(epochs=20), "anon:b")
    with pytest.raises(AdapterError, match=r"The studio's training queue is full \(2 runs\)"):
        public.submit(config(epochs=20), "anon:c")
    for job in (first, second):
        public.jobs.stop(job.id)
        public.jobs.wait(job.id, 300)
    assert {j.status for j in (first, second)} <= {"stopped", "cancelled", "completed"}


def test_library_quota_per_owner(tmp_path):
    studio = Studio(tmp_path, policy=Policy(public=True, max_adapters_per_owner=1))
    publish_random(studio, "minilm", "mine", "classification", LABELS, owner="anon:a")
    with pytest.raises(AdapterError, match=r"Your library is full \(1 adapters, the limit is 1\)"):
        studio.submit(config(), "anon:a")
    studio.jobs.close(timeout=60)


def test_public_mode_needs_an_owner_and_local_mode_ignores_it(tmp_path, public):
    with pytest.raises(AdapterError, match="no visitor identity"):
        public.submit(config(), None)
    local = Studio(tmp_path / "local", policy=Policy.local())
    assert local.owner("anon:x") is None and local.data_file("/anything/at/all.csv").name == "all.csv"
    local.jobs.close(timeout=10)


def test_files_come_only_from_uploads_or_samples(public, tmp_path):
    upload = tmp_path / "uploads" / "abc" / "mine.csv"
    upload.parent.mkdir()
    upload.write_text("text,label\n")
    assert public.data_file(upload) == upload.resolve()
    assert public.data_file(SAMPLE).name == "support_routing.csv"
    link = tmp_path / "uploads" / "link.csv"
    link.symlink_to("/etc/passwd")
    for path in ("/etc/passwd", str(tmp_path / "uploads" / ".." / "outside.csv"), str(link)):
        with pytest.raises(AdapterError, match="Data files come only from your uploads"):
            public.data_file(path)
    with pytest.raises(AdapterError, match="Files come only from your uploads"):
        public.upload([SAMPLE], "hf:a")
    with pytest.raises(AdapterError, match="Files come only from your uploads"):
        public.evaluate(["x"], "/etc/passwd", "anon:a")


def test_idle_base_models_are_evicted_under_the_memory_budget(tmp_path):
    studio = Studio(tmp_path, policy=Policy(public=False, model_budget_bytes=1))
    studio.base("minilm")
    studio.base("smollm2-135m-instruct")
    assert studio.bases.names() == ["smollm2-135m-instruct"]  # one model over budget: the idle one goes
    studio.base("minilm")
    assert studio.bases.names() == ["minilm"]
    studio.jobs.close(timeout=10)


def test_downloads_are_fresh_folders_and_old_ones_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "DOWNLOADS", tmp_path / "downloads")
    studio = Studio(tmp_path / "home", policy=Policy(public=True))
    publish_random(studio, "minilm", "mine", "classification", LABELS, owner="anon:a")
    first = studio.download("mine", "anon:a")
    old = time.time() - downloads.DOWNLOAD_TTL_S - 10
    os.utime(first.parent, (old, old))
    second = studio.download("mine", "anon:a")
    assert second.is_file() and not first.exists() and first.parent != second.parent
    with pytest.raises(AdapterError, match="No adapter named 'mine' in your library"):
        studio.download("mine", "anon:b")
    studio.jobs.close(timeout=10)


def test_other_visitors_run_names_stay_out_of_my_queue(public):
    job, _ = public.submit(config(epochs=20, name="secret project"), "anon:a")
    text = h.queue_text(public, "anon:b")
    assert "secret project" not in text and ("another visitor" in text or "other visitors" in text)
    assert "secret project" in h.queue_text(public, "anon:a")
    public.jobs.stop(job.id)
    public.jobs.wait(job.id, 300)


def test_on_zero_gpu_runs_train_on_the_cpu(public, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    job, _ = public.submit(config(max_steps=1), "anon:a")
    public.jobs.wait(job.id, 300)
    assert job.config.device == "cpu" and job.status == "completed"
    assert next(e for e in job.events if e.get("status") == "training")["info"]["device"] == "cpu"
