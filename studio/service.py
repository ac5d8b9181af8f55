"""The studio's app-wide state and operations, without gradio: the UI handlers are thin calls into this.

One `Studio` per process holds the job manager, the run store, the adapter library and the resident
base models that serve requests. Training always uses its own base instance (the engine loads one),
so serving never sees train-mode dropout or a half-trained adapter.

This is the trust boundary. Every operation takes the caller's `owner` explicitly (None in local
mode) and checks it against the `Policy`: which models load, which files are read, what a visitor
sees and changes, and how much they may ask for. The browser and any API caller meet the same checks.
An owner that came from a request is a `callers.Caller`, which also carries the client address that
the limits per address count.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from adapter_core import (
    AdapterConfig,
    AdapterError,
    Base,
    count_adapter_params,
    studio_home,
)
from adapter_core.engine import (
    Job,
    JobManager,
    Run,
    RunStore,
    SliceBroker,
    SweepRecord,
    measured_per_token,
    oos_texts,
)
from adapter_core.serve import Dispatcher, ModelPool, model_bytes

from .answering import Answering
from .bases import ModelInfo, model_info
from .callers import address_of
from .downloads import download_folder, trim_downloads
from .evaluations import Evaluating
from .hardware import ON_ZERO_GPU
from .library import Entry, Library, check_name
from .policy import Policy
from .quotas import check_library_room, check_resume, check_submit, check_sweep, library_room
from .sample_files import SAMPLES_DIR
from .sweeps import best_name, outcome
from .uploads import unpacked_size

HUB_DATA = "hub-data"  # under the home: Hub datasets' splits kept as data files (see `hub_view`)
MAX_REMEMBERED_UPLOADS = 1000


class Studio(Answering, Evaluating):
    def __init__(self, home: str | Path | None = None, policy: Policy | None = None):
        self.home = Path(home or studio_home())
        self.policy = policy or Policy.from_env()
        self.library = Library(self.home)
        # Sweeps an earlier process left running are finished here, and their best published.
        # On ZeroGPU runs train in slices that their visitors' own requests lease (studio/zerogpu.py).
        self.jobs = JobManager(
            RunStore(self.home),
            on_finish=self._publish,
            publish_best=self._publish_best,
            leases=SliceBroker() if ON_ZERO_GPU else None,
        )
        self.upload_roots: list[Path] = []  # where the web front end keeps visitors' uploads
        self.bases = ModelPool(self.policy.check_model, self.policy.model_budget_bytes)
        # The dispatcher serves the Use and Compare tabs and the HTTP API alike: one batch per base for all.
        self.dispatcher = Dispatcher(
            self.library,
            self.bases,
            self.policy.serve_limits(),
            bare_bases=lambda: [*self.policy.allowed_models, *self.bases.names()],
        )
        self.lock = threading.RLock()  # the bookkeeping below, and `pulling`
        self._submit_lock = threading.Lock()
        self.pulling: set[str | None] = set()  # the owners with a Hub pull in progress (see `sharing`)
        self._uploads: dict[str, tuple[str | None, str]] = {}  # token -> (owner, path); see remember_upload
        self._speeds: dict[str, tuple[int, float | None]] = {}  # base -> (runs finished then, its figure)

    def owner(self, owner: str | None) -> str | None:
        """The scope of a call: None in local mode (one trusted user), the visitor's id in public mode."""
        if not self.policy.public:
            return None
        if not owner:
            raise AdapterError("This request has no visitor identity; reload the page and try again.")
        return owner

    # Base models ---------------------------------------------------------------------------------
    def base(self, name: str) -> Base:
        """The resident serving instance of base `name`, if the policy allows it."""
        return self.bases.get(name)

    def seconds_per_token(self, base_name: str) -> float | None:
        """This machine's training speed on `base_name`, as the newest finished run of it here measured it
        (any visitor's: it says nothing of theirs), or None before one has: the estimate before Start takes
        it over the plan's fixed figure. Read again only when a run has finished since."""
        finished = sum(job.finished.is_set() for job in self.jobs.jobs())
        known = self._speeds.get(base_name)
        if known is None or known[0] != finished:
            known = self._speeds[base_name] = (finished, measured_per_token(self.jobs.store.list(), base_name))
        return known[1]

    def model_info(self, name: str) -> ModelInfo:
        return model_info(self.base(name))

    def estimate(self, base_name: str, config: AdapterConfig, num_labels: int) -> dict[str, float]:
        """Trainable parameters, their share of the base, and disk sizes, before training."""
        if config.bottleneck_for(1) > self.policy.max_bottleneck:
            raise AdapterError(
                f"Bottleneck {config.bottleneck} is over this studio's limit of {self.policy.max_bottleneck}."
            )
        base = self.base(base_name)
        trainable = count_adapter_params(base.model, config, num_labels)
        params = base.num_parameters
        return {
            "trainable": trainable,
            "percent": 100 * trainable / params,
            "adapter_mb": trainable * 4 / 1e6,
            "full_copy_mb": model_bytes(base) / 1e6,
        }

    # Files from visitors ---------------------------------------------------------------------------
    def data_file(self, path: str | Path | None) -> Path:
        """A data file a visitor may use: a bundled sample, one of the uploads or a Hub dataset's split the
        studio kept. In public mode any other server path is refused, whoever asks."""
        if not path:
            raise AdapterError("Load a data file first: upload a CSV, TSV or JSONL file, or pick a sample.")
        resolved = Path(path).resolve()
        if self.policy.public and not _inside(resolved, [SAMPLES_DIR, self.home / HUB_DATA, *self.upload_roots]):
            raise AdapterError("Data files come only from your uploads or the bundled samples. Upload the file.")
        return resolved

    def data_bytes_limit(self, path: str | Path) -> int | None:
        """The byte cap a data file is read under: the policy's, except for a Hub split the studio kept.
        That one passed the cap as the Hub stores it (parquet, compressed) before the download and the
        row cap before it was written; as JSON lines it is often several times larger, and a second byte
        cap would refuse at the preview or at Start a dataset the first one let in."""
        return None if _inside(Path(path).resolve(), [self.home / HUB_DATA]) else self.policy.max_data_bytes

    def uploaded(self, paths: list[str | Path]) -> list[Path]:
        """Uploaded files (adapters, test sets): in public mode only from the uploads folder."""
        out = []
        for p in paths:
            resolved = Path(p).resolve()
            if self.policy.public and not _inside(resolved, self.upload_roots):
                raise AdapterError("Files come only from your uploads. Upload the file.")
            out.append(resolved)
        return out

    # Training ------------------------------------------------------------------------------------
    def submit(
        self, config, owner: str | None = None, continue_from: str | None = None, cpu_when_away: bool = False
    ) -> tuple[Job, list[str]]:
        """Queue a run for `owner` within the policy's quotas. Returns the job and notes on settings the
        policy adjusted (a max length clamped to the model's limit, say). `continue_from`: an adapter of
        the caller's library (by name, never a path) that the run goes on training."""
        owner = self.owner(owner)
        config.data = str(self.data_file(config.data))
        config.val_data = str(self.data_file(config.val_data)) if config.val_data else None
        self._check_training_data(config.data, owner)
        config.oos_data = str(self.oos_file(config.oos_data, owner)[0]) if config.oos_data else None
        config.init_from = str(self.library.get(continue_from, owner=owner).path) if continue_from else None
        with self._submit_lock:
            notes = check_submit(self, config, owner)
            job = self.jobs.submit(config, owner=owner, share=address_of(owner), cpu_when_away=cpu_when_away)
            return job, notes

    def resume(self, run_id: str, owner: str | None = None, cpu_when_away: bool = False) -> Job:
        """Queue one of the caller's stopped or interrupted runs to go on from its checkpoint, within the
        quotas a new run meets."""
        owner = self.owner(owner)
        run = self.jobs.store.get(run_id, owner=owner)
        self._check_training_data(run.train_config().data, owner)
        with self._submit_lock:
            check_resume(self, run.train_config(), owner)
            return self.jobs.resume(run.id, owner=owner, share=address_of(owner), cpu_when_away=cpu_when_away)

    def submit_sweep(self, configs: list, name: str, owner: str | None = None) -> tuple[SweepRecord, list[str]]:
        """Queue a sweep's runs (see `studio/sweeps.py`) for `owner` through the engine's sweep executor,
        within the quotas. When the last ends, only the best is published, as `<name>-best`."""
        owner = self.owner(owner)
        self.policy.check_heavy(owner, "A sweep")
        if not configs:
            raise AdapterError("A sweep needs at least one bottleneck and one learning rate.")
        name = check_name(name)
        for config in configs:
            config.data = str(self.data_file(config.data))
            config.val_data = str(self.data_file(config.val_data)) if config.val_data else None
        with self._submit_lock:
            notes = check_sweep(self, configs, owner)
            return self.jobs.sweeps.submit(configs, name, owner, share=address_of(owner)), notes

    def _publish_best(self, sweep: SweepRecord, best: Run) -> str:
        """The sweep executor's publish step: the best run's adapter to the owner's library as `<name>-best`."""
        entry = self.library.publish(
            best.adapter_dir, best_name(sweep), owner=sweep.owner, curve=best.dir / "metrics.jsonl"
        )
        best.set_status(best.status()["status"], library_name=entry.name)
        sweep.published = entry.name  # the executor records it too; the message reads it
        job = self.jobs.find(best.id)
        if job is not None:  # the Train tab, following the run, says where its adapter went
            job.events.append({"kind": "published", "message": outcome(sweep), "library_name": entry.name})
        return entry.name

    def oos_file(self, path: str | Path, owner: str | None) -> tuple[Path, int]:
        """A file of out-of-scope example messages for a router's run, and how many it holds: an upload (or
        a sample) no longer than an evaluation may read, with a text column, checked before the run queues
        (the run reads it at its end, to pick the out-of-scope score and report what it catches)."""
        checked = self.data_file(path)
        self._check_eval_rows(checked, owner)
        return checked, len(oos_texts(checked))

    def _check_training_data(self, data: str | Path | None, owner: str | None) -> None:
        """Visitors who are not signed in train on the bundled samples only (in a small pool of their own,
        see `quotas`); their own files need a sign-in."""
        if not self.policy.signed_in(owner) and not _inside(Path(str(data)).resolve(), [SAMPLES_DIR]):
            self.policy.check_heavy(owner, "Training on your own data")

    def _publish(self, job: Job) -> None:
        """A finished run's adapter goes to the library; a sweep's runs wait for the sweep's end, when
        only the best is published (`_publish_best`). A full fine-tune keeps no adapter."""
        if job.group is not None:
            sweep = self.jobs.sweeps.find(job.group)
            # A run resumed after its sweep ended (or of a group that is no sweep) is published on its own.
            if not job.resume or (sweep is not None and not sweep.ended):
                return
        if job.status in ("completed", "stopped") and job.config.mode == "full":
            job.events.append(
                {"kind": "published", "message": "A full fine-tune keeps no adapter: compare it under Compare → Runs."}
            )
            return
        if job.status in ("completed", "stopped") and job.run.has_adapter:
            earlier = job.run.status().get("library_name") if job.resume else None
            entry = self.library.publish(
                job.run.adapter_dir, job.config.name, job.owner, job.run.dir / "metrics.jsonl", replaces=earlier
            )
            job.run.set_status(job.status, library_name=entry.name)
            job.events.append(
                {"kind": "published", "message": f"Saved to the library as {entry.name!r}.", "library_name": entry.name}
            )

    # Uploads a browser may come back to ----------------------------------------------------------
    def remember_upload(self, path: str | Path, owner: str | None = None) -> str:
        """A token for an uploaded data file, for the visitor's browser to keep instead of its path."""
        token = secrets.token_urlsafe(16)
        with self.lock:
            self._uploads[token] = (self.owner(owner), str(self.data_file(path)))
            while len(self._uploads) > MAX_REMEMBERED_UPLOADS:
                self._uploads.pop(next(iter(self._uploads)))
        return token

    def recall_upload(self, token: str, owner: str | None = None) -> Path | None:
        """The file behind `token` if it is this visitor's and still on the server, else None."""
        with self.lock:
            found = self._uploads.get(token) if isinstance(token, str) else None
        if found is None or found[0] != self.owner(owner) or not Path(found[1]).is_file():
            return None
        return self.data_file(found[1])

    # Library -------------------------------------------------------------------------------------
    def download(self, name: str, owner: str | None = None) -> Path:
        """A zip of adapter `name` in a fresh folder of the downloads area; old zips are removed."""
        owner = self.owner(owner)
        self.library.get(name, owner=owner)  # visible to this caller, or a clear error
        return self.kept(self.library.zip(name, self.download_folder(owner), owner=owner))

    def download_folder(self, owner: str | None) -> Path:
        """A fresh folder for one of `owner`'s zips (see `downloads`)."""
        return download_folder(self.policy, owner)

    def kept(self, path: Path) -> Path:
        """`path`, a zip just written to the downloads area, which is trimmed to its cap around it."""
        trim_downloads(self.policy, path)
        return path

    def upload(self, files: list[str | Path], owner: str | None = None) -> Entry:
        """An adapter from uploaded files into the caller's library, counted at its unpacked size."""
        owner = self.owner(owner)
        self.policy.check_heavy(owner, "Uploading adapters")
        paths = self.uploaded(files)
        room = None
        if owner is not None:
            incoming = unpacked_size(paths, self.policy)
            check_library_room(self, owner, incoming=incoming)
            room = library_room(self, owner)
        return self.library.upload(paths, owner=owner, limits=self.policy, max_bytes=room)

    def rename(self, old: str, new: str, owner: str | None = None) -> Entry:
        return self.library.rename(old, new, owner=self.owner(owner))

    def delete(self, name: str, owner: str | None = None) -> None:
        self.library.delete(name, owner=self.owner(owner))


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root.resolve()) for root in roots)
