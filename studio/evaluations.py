"""The studio's evaluations: adapters scored on a visitor's labelled file, or their answers on a file of
instruction pairs beside their bare base's, within the policy's rows. A part of `Studio` (studio/service.py).
"""

from __future__ import annotations

from pathlib import Path

from adapter_core import AdapterError, Base
from adapter_core.engine import JobManager, ScoreSettings, evaluate_file, read_table, score_file

from .policy import Policy
from .report_view import run_report

# What a router's row of an evaluation with out-of-scope rows adds (`calibration.ood_metrics`).
OOS_SCORES = ("auroc", "fpr_at_95_tpr", "oos_recall", "in_scope_false_rejection", "oos_rows")


class Evaluating:
    """What `Studio` evaluates with; it provides these attributes and `owner`, `uploaded` and `served`."""

    policy: Policy
    jobs: JobManager

    def evaluate(
        self, adapters: list[str], data_path: str | Path, owner: str | None = None, oos_label: str | None = None
    ) -> list[dict]:
        """Each adapter's scores on a labelled file; a classification adapter's row also holds its
        per-class `report` (per-class scores, confusion matrix, misclassified rows). With `oos_label`, the
        file's rows of that label are out-of-scope messages, and each router's row also says how its saved
        decision sets them apart (`OOS_SCORES`). Each adapter once, and a file within the policy's rows,
        checked before anything runs."""
        owner = self.owner(owner)
        twice = next((n for n in adapters if list(adapters).count(n) > 1), None)
        if twice is not None:
            raise AdapterError(f"{twice!r} is picked more than once; pick each adapter once.")
        (path,) = self.uploaded([data_path]) if self.policy.public else [Path(data_path)]
        max_rows = self._check_eval_rows(path, owner)
        rows = []
        for name in adapters:
            base, entry = self.served(name, owner=owner)
            metrics = dict(evaluate_file(base, entry.slot, path, max_rows=max_rows, oos_label=oos_label or None))
            report = metrics.pop("report", None)
            oos = metrics.pop("out_of_scope", None) or {}
            metrics.update({k: oos[k] for k in OOS_SCORES if k in oos})
            rows.append(
                {
                    "adapter": name,
                    **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
                    **({"report": report} if report else {}),
                }
            )
        return rows

    def score_answers(self, adapters: list[str], data_path: str | Path, owner: str | None = None) -> dict:
        """Instruction adapters' answers to a test file of (instruction, response) pairs, scored beside
        their base's bare answers: {"scores": [one row per adapter, then one per base], "settings"}. The
        adapters of one base and that base answer in one mixed batch. The file is bounded as an
        evaluation's, the pairs answered and the answers' tokens by the policy, before anything runs."""
        owner = self.owner(owner)
        (path,) = self.uploaded([data_path]) if self.policy.public else [Path(data_path)]
        max_rows = self._check_eval_rows(path, owner)
        groups: dict[str, tuple[Base, dict[str | None, str]]] = {}
        for name in adapters:
            base, entry = self.served(name, "instruction", owner)
            groups.setdefault(base.name, (base, {}))[1][entry.slot] = name
        settings = ScoreSettings(
            max_new_tokens=self.policy.clamp_new_tokens(ScoreSettings.max_new_tokens),
            max_pairs=self.policy.max_scored_pairs,
        )
        scores, said = [], {}
        for base, labels in groups.values():
            labels[None] = f"base: {base.name}"
            result = score_file(base, list(labels), path, settings, max_rows=max_rows, labels=labels)
            scores += result["scores"]
            said = result["settings"]
        return {"scores": scores, "settings": said}

    def _check_eval_rows(self, path: Path, owner: str | None) -> int:
        """The rows an evaluation may read for this caller; a larger file is refused before any model runs."""
        limit = self.policy.max_eval_rows_for(owner)
        rows = len(read_table(path, self.policy.max_data_bytes))
        if rows > limit:
            more = "" if self.policy.signed_in(owner) else f" ({self.policy.max_eval_rows:,} when signed in)"
            raise AdapterError(
                f"{path.name} has {rows:,} rows; an evaluation here reads at most {limit:,}{more}. "
                "Evaluate on a sample of it."
            )
        return limit

    def run_report(self, run_id: str, owner: str | None = None) -> dict | None:
        """The per-class report a classification run saved (report.json), if the caller may see the run."""
        return run_report(self.jobs.store.get(run_id, owner=self.owner(owner)))
