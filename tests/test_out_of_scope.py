"""Out-of-scope scores: their maths, the statistics file beside an adapter (round trip and schema check),
an old adapter's fallback on its top probability, and classify()'s in_scope and ood_score."""

import json

import pandas as pd
import pytest
import torch
from helpers import tiny_model
from safetensors.torch import save_file
from transformers import AutoTokenizer

from adapter_core import (
    AdapterConfig,
    AdapterError,
    add_adapter,
    classify,
    get_record,
    load_adapter,
    out_of_scope,
    save_adapter,
)
from adapter_core.catalog import CATALOG, Base, embedded_path
from adapter_core.engine.calibration import Predictions, calibrate
from adapter_core.engine.evaluation import evaluate_file
from adapter_core.io import CONFIG_FILE, STATS_FILE
from adapter_core.out_of_scope import (
    Detector,
    energy_knn,
    fit_stats,
    fused,
    knn,
    mahalanobis,
    relative_mahalanobis,
    scores,
)
from adapter_core.placement import model_family
from adapter_core.routing import decide

LABELS = ["billing", "orders", "tech"]


def clusters(n: int = 300, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three Gaussian clusters (fixed centres; `seed` draws the rows) with one shared, stretched
    covariance: (features, labels, centres)."""
    centres = torch.randn(3, dim, generator=torch.Generator().manual_seed(0)) * 4
    scale = torch.linspace(0.2, 3, dim)  # a covariance far from the identity
    y = torch.arange(n) % 3
    noise = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed + 1))
    return centres[y] + noise * scale, y, centres


def test_mahalanobis_separates_a_far_point_and_matches_the_formula():
    x, y, centres = clusters()
    stats = fit_stats(x, y, 3)
    assert torch.allclose(stats.means, centres, atol=0.6)
    inliers, _, _ = clusters(seed=1)
    # 4 units along the thin axis (sigma 0.2) is far; along the wide one (sigma 3) it is not.
    far, near = centres[0] + torch.eye(8)[0] * 4, centres[0] + torch.eye(8)[7] * 4
    d_in, d_far = mahalanobis(inliers, stats), mahalanobis(far[None], stats)
    assert d_far.item() > 4 * torch.quantile(d_in, 0.99).item()  # both lie 4 units (Euclidean) from centre 0
    assert mahalanobis(near[None], stats).item() < torch.quantile(d_in, 0.99).item()
    # The expanded form equals the plain one.
    diff = far[None, None] - stats.means[None]
    plain = torch.einsum("rch,hk,rck->rc", diff, stats.precision, diff).min(-1).values
    assert d_far.item() == pytest.approx(plain.item(), rel=1e-4)


def test_relative_mahalanobis_subtracts_the_background_distance():
    x, y, centres = clusters()
    stats = fit_stats(x, y, 3)
    points = torch.cat([centres, centres.mean(0, keepdim=True) * 5])
    d = points.double() - stats.background_mean.double()
    background = torch.einsum("rh,hk,rk->r", d, stats.background_precision.double(), d)
    expected = mahalanobis(points, stats).double() - background
    assert torch.allclose(relative_mahalanobis(points, stats).double(), expected, rtol=1e-4, atol=1e-3)
    assert torch.allclose(stats.background_mean, x.mean(0), atol=1e-5)


def test_knn_and_the_logit_scores():
    x, y, centres = clusters()
    stats = fit_stats(x, y, 3)
    assert stats.bank.shape == x.shape and torch.allclose(stats.bank.norm(dim=-1), torch.ones(len(x)))
    away = -centres.mean(0, keepdim=True) * 3  # a direction no training row points to
    assert knn(away, stats).item() > knn(centres, stats).max().item()
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.1, 0.0, 0.0]])  # sure, then unsure
    out = scores(("msp", "energy"), torch.zeros(2, 8), logits, None)
    assert out["msp"][0] < out["msp"][1] and out["energy"][0] < out["energy"][1]
    with pytest.raises(ValueError, match="training statistics"):
        scores("mahalanobis", torch.zeros(1, 8), logits[:1], None)


def test_fused_adds_relative_mahalanobis_and_energy_standardised_on_the_training_rows():
    x, y, centres = clusters()
    logits = -((x[:, None] - centres[None]) ** 2).sum(-1) / 8  # a head that is sure near a centre
    stats = fit_stats(x, y, 3, logits=logits)
    rm, energy = relative_mahalanobis(x, stats).double(), -torch.logsumexp(logits, -1).double()
    expected = (rm - rm.mean()) / rm.std() + (energy - energy.mean()) / energy.std()
    assert torch.allclose(fused(x, logits, stats).double(), expected, atol=1e-4)
    assert scores("fused", x, logits, stats)["fused"].mean().abs() < 1e-4  # two z-scores: mean 0 on training
    # Far from every centre in the features, or a head that answers weakly (every logit lower): each
    # raises the score.
    away = centres.mean(0, keepdim=True) * -3
    assert fused(away, logits[:1], stats) > fused(x[:1], logits[:1], stats)
    assert fused(x[:1], logits[:1] - 5, stats) > fused(x[:1], logits[:1], stats)
    assert not fit_stats(x, y, 3).supports("fused")  # fitted without logits: no fusion, so not offered
    with pytest.raises(ValueError, match="training statistics"):
        scores("fused", x, logits, fit_stats(x, y, 3))


@pytest.mark.parametrize("bank_rows", [None, 40])
def test_energy_knn_adds_knn_without_the_row_itself_and_energy_standardised_on_the_training_rows(
    monkeypatch, bank_rows
):
    """The default score. On its own training rows each row is scored against the bank without itself
    (else its distance is 0), also when the bank holds only some of the rows (`bank_rows`)."""
    if bank_rows:
        monkeypatch.setattr(out_of_scope, "MAX_BANK", bank_rows)
    x, y, centres = clusters(n=90)
    logits = -((x[:, None] - centres[None]) ** 2).sum(-1) / 8
    stats = fit_stats(x, y, 3, logits=logits)
    assert stats.knn_k.tolist() == [1.0] and len(stats.bank) == (bank_rows or 90)
    unit = torch.nn.functional.normalize(x.double(), dim=-1)
    sims = unit @ stats.bank.double().T
    sims[(sims - 1).abs() < 1e-6] = -2  # a row's own entry in the bank
    nearest = 1 - sims.max(-1).values
    energy = -torch.logsumexp(logits, -1).double()
    want = torch.stack([nearest.mean(), nearest.std(), energy.mean(), energy.std()]).float()
    assert torch.allclose(stats.knn_fusion, want, atol=1e-5)
    m_k, s_k, m_e, s_e = want.tolist()
    expected = (knn(x, stats).double() - m_k) / s_k + (energy - m_e) / s_e
    assert torch.allclose(energy_knn(x, logits, stats).double(), expected, atol=1e-4)
    assert torch.equal(scores("energy_knn", x, logits, stats)["energy_knn"], energy_knn(x, logits, stats))
    away = -centres.mean(0, keepdim=True) * 3
    assert energy_knn(away, logits[:1], stats) > energy_knn(x[:1], logits[:1], stats)
    assert energy_knn(x[:1], logits[:1] - 5, stats) > energy_knn(x[:1], logits[:1], stats)
    assert not fit_stats(x, y, 3).supports("energy_knn")  # fitted without logits: not offered


def test_knn_reads_the_saved_neighbour_and_a_file_saved_before_it_the_tenth():
    x, y, _ = clusters()
    stats = fit_stats(x, y, 3)
    probe = torch.randn(5, 8)
    ranked = (torch.nn.functional.normalize(probe, dim=-1) @ stats.bank.T).sort(-1, descending=True).values
    assert torch.allclose(knn(probe, stats), 1 - ranked[:, 0], atol=1e-6)
    stats.knn_k = None  # a statistics file saved when knn read the 10th nearest row
    assert torch.allclose(knn(probe, stats), 1 - ranked[:, 9], atol=1e-6)


def test_out_of_scope_examples_pick_the_score_that_catches_most():
    x, y, centres = clusters()
    stats = fit_stats(x, y, 3)
    logits = torch.zeros(len(x), 3)  # useless logits: msp and energy cannot tell anything apart
    val = Predictions(y.tolist(), [1 / 3] * len(x), y.tolist(), [0.0] * len(x), x, logits)
    oos_x = centres.mean(0) + torch.randn(50, 8) * 0.1  # between the clusters
    oos = Predictions([0] * 50, [1 / 3] * 50, [0] * 50, [0.0] * 50, oos_x, torch.zeros(50, 3))
    section = calibrate(val, stats, "msp", 0.05, oos)
    assert section["score"] in ("mahalanobis", "knn") and section["oos_recall"] > 0.9
    assert len(section["curve"]["oos_recall"]) == len(section["curve"]["threshold"])


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))


def base(tokenizer) -> torch.nn.Module:
    model = tiny_model("bert", head="base")
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return model


def router(tokenizer, detector: Detector | None = None) -> torch.nn.Module:
    model = base(tokenizer)
    add_adapter(model, "route", AdapterConfig(bottleneck=8), labels=LABELS)
    get_record(model, "route").detector = detector
    return model


def saved_router(tokenizer, tmp_path, section: dict, score: str = "mahalanobis"):
    """A tiny router fitted on random features, saved with `section` as its out-of-scope decision."""
    hidden = 32
    stats = fit_stats(torch.randn(60, hidden), torch.arange(60) % 3, 3)
    model = router(tokenizer, Detector(score, section.get("threshold", 0.0), stats))
    folder = save_adapter(model, "route", tmp_path / "route", extra={"out_of_scope": section})
    return model, folder


TEXTS = ["where is my parcel", "my card does not work", "zzzz qqq", "refund please"]


def test_the_statistics_file_round_trips_and_classify_decides_with_it(tokenizer, tmp_path):
    section = {"score": "mahalanobis", "threshold": 40.0, "false_rejection": 0.05, "msp_threshold": 0.5}
    model, folder = saved_router(tokenizer, tmp_path, section)
    assert (folder / STATS_FILE).is_file()
    fresh = base(tokenizer)
    load_adapter(fresh, folder)
    saved, loaded = get_record(model, "route").detector, get_record(fresh, "route").detector
    assert loaded.score == "mahalanobis" and loaded.threshold == 40.0
    for key, value in saved.stats.tensors().items():
        assert torch.equal(getattr(loaded.stats, key), value)
    preds = classify(fresh, tokenizer, TEXTS, "route")
    assert all(p.ood_score is not None and p.in_scope == (p.ood_score <= 40.0) for p in preds)
    assert [p.ood_score for p in preds] == pytest.approx(
        [p.ood_score for p in classify(model, tokenizer, TEXTS, "route")]
    )
    # The router decides with the prediction's own decision, or with a threshold given in its units.
    lowest = min(p.ood_score for p in preds)
    routes = {preds[0].label: "department"}
    assert decide(preds[0], routes, threshold=lowest / 2).fallback and not decide(preds[0], routes, 1e9).fallback


def test_a_fused_router_round_trips_and_a_file_without_its_fusion_falls_back_on_msp(tokenizer, tmp_path):
    hidden = 32
    x, y = torch.randn(60, hidden), torch.arange(60) % 3
    stats = fit_stats(x, y, 3, logits=torch.randn(60, 3))
    section = {"score": "fused", "threshold": 1.5, "msp_threshold": 0.6}
    model = router(tokenizer, Detector("fused", 1.5, stats))
    folder = save_adapter(model, "route", tmp_path / "route", extra={"out_of_scope": section})
    load_adapter(fresh := base(tokenizer), folder)
    loaded = get_record(fresh, "route").detector
    assert loaded.score == "fused" and torch.equal(loaded.stats.fusion, stats.fusion)
    preds = classify(fresh, tokenizer, TEXTS, "route")
    assert all(p.in_scope == (p.ood_score <= 1.5) for p in preds)
    save_file({**stats.tensors(), "fusion": torch.zeros(5)}, folder / STATS_FILE)  # the wrong shape
    with pytest.raises(AdapterError, match=f"{STATS_FILE} does not match its config"):
        load_adapter(base(tokenizer), folder)
    save_file({k: v for k, v in stats.tensors().items() if k != "fusion"}, folder / STATS_FILE)  # saved before fused
    load_adapter(older := base(tokenizer), folder)
    assert get_record(older, "route").detector.score == "msp" and get_record(older, "route").detector.threshold == 0.6


def test_a_router_saved_before_energy_knn_keeps_its_knn_and_a_bad_neighbour_is_refused(tokenizer, tmp_path):
    x, y = torch.randn(60, 32), torch.arange(60) % 3
    stats = fit_stats(x, y, 3, logits=torch.randn(60, 3))
    model = router(tokenizer, Detector("energy_knn", 0.5, stats))
    folder = save_adapter(
        model, "route", tmp_path / "route", extra={"out_of_scope": {"score": "energy_knn", "threshold": 0.5}}
    )
    load_adapter(fresh := base(tokenizer), folder)
    loaded = get_record(fresh, "route").detector
    assert loaded.score == "energy_knn" and torch.equal(loaded.stats.knn_fusion, stats.knn_fusion)
    assert [p.ood_score for p in classify(fresh, tokenizer, TEXTS, "route")] == pytest.approx(
        [p.ood_score for p in classify(model, tokenizer, TEXTS, "route")]
    )
    older = {k: v for k, v in stats.tensors().items() if k not in ("knn_k", "knn_fusion")}
    save_file(older, folder / STATS_FILE)
    (folder / CONFIG_FILE).write_text(
        json.dumps(
            json.loads((folder / CONFIG_FILE).read_text()) | {"out_of_scope": {"score": "knn", "threshold": 0.5}}
        )
    )
    load_adapter(old := base(tokenizer), folder)
    assert get_record(old, "route").detector.stats.knn_k is None  # it reads the 10th nearest, as when saved
    for bad in (0.0, 2.5, float("nan"), 1e9):
        save_file({**older, "knn_k": torch.tensor([bad])}, folder / STATS_FILE)
        with pytest.raises(AdapterError, match="knn_k must be a whole number"):
            load_adapter(base(tokenizer), folder)


def test_a_damaged_statistics_file_is_refused_before_it_is_read(tokenizer, tmp_path):
    _, folder = saved_router(tokenizer, tmp_path, {"score": "knn", "threshold": 0.5})
    save_file(
        {"means": torch.zeros(5, 32), "precision": torch.zeros(32, 32), "bank": torch.zeros(4, 32)}, folder / STATS_FILE
    )
    with pytest.raises(AdapterError, match=f"route: {STATS_FILE} does not match its config") as e:
        load_adapter(base(tokenizer), folder)
    assert "means [5, 32]" in str(e.value) and "3 labels" in str(e.value)


def test_statistics_in_half_precision_load_as_float32_and_bad_values_are_refused_at_load_and_pull(tokenizer, tmp_path):
    """A header check passes a file whose values still break the score: half precision (classify failed
    on the dtype), non-finite values, a spread of 0 that scores every message out of scope, a neighbour
    past the bank. Loading and a Hub pull's check read the same way."""
    from adapter_core.pull import check_adapter_folder

    x, y = torch.randn(60, 32), torch.arange(60) % 3
    stats = fit_stats(x, y, 3, logits=torch.randn(60, 3))
    model = router(tokenizer, Detector("energy_knn", 0.5, stats))
    folder = save_adapter(
        model, "route", tmp_path / "route", extra={"out_of_scope": {"score": "energy_knn", "threshold": 0.5}}
    )
    expected = [p.ood_score for p in classify(model, tokenizer, TEXTS, "route")]
    save_file({k: v.half() for k, v in stats.tensors().items()}, folder / STATS_FILE)
    load_adapter(half := base(tokenizer), folder)
    assert get_record(half, "route").detector.stats.bank.dtype == torch.float32
    assert [p.ood_score for p in classify(half, tokenizer, TEXTS, "route")] == pytest.approx(expected, rel=1e-2)
    bank = stats.tensors()["bank"]
    cases = {
        "not finite numbers in its bank": {"bank": torch.full_like(bank, float("nan"))},
        "knn_fusion has a spread of 0 or below": {"knn_fusion": torch.tensor([1.0, 0.0, 2.0, 1.0])},
        f"knn_k is 61, but its bank holds {len(bank)} rows": {"knn_k": torch.tensor([61.0])},
    }
    for message, change in cases.items():
        save_file({**stats.tensors(), **change}, folder / STATS_FILE)
        with pytest.raises(AdapterError, match=f"route: .*{message}"):
            load_adapter(base(tokenizer), folder)
        with pytest.raises(AdapterError, match=message):
            check_adapter_folder(folder)


def test_an_old_adapter_keeps_deciding_on_its_top_probability(tokenizer, tmp_path):
    """Saved before scores had names: a confidence threshold and no statistics file."""
    model = router(tokenizer)
    folder = save_adapter(model, "route", tmp_path / "old", extra={"out_of_scope": {"threshold": 0.34}})
    assert not (folder / STATS_FILE).exists()
    fresh = base(tokenizer)
    load_adapter(fresh, folder)
    preds = classify(fresh, tokenizer, TEXTS, "route")
    assert [p.in_scope for p in preds] == [p.confidence >= 0.34 for p in preds]
    assert [p.ood_score for p in preds] == pytest.approx([1 - p.confidence for p in preds])
    # A router without any decision sends everything in scope, with no score.
    plain = save_adapter(model, "route", tmp_path / "plain")
    load_adapter(bare := base(tokenizer), plain)
    assert all(p.in_scope and p.ood_score is None for p in classify(bare, tokenizer, TEXTS, "route"))


def test_a_copy_without_its_statistics_falls_back_on_msp(tokenizer, tmp_path):
    section = {"score": "mahalanobis", "threshold": 40.0, "msp_threshold": 0.6}
    _, folder = saved_router(tokenizer, tmp_path, section)
    (folder / STATS_FILE).unlink()
    fresh = base(tokenizer)
    load_adapter(fresh, folder)
    detector = get_record(fresh, "route").detector
    assert detector.score == "msp" and detector.threshold == 0.6
    meta = json.loads((folder / CONFIG_FILE).read_text())
    assert meta["out_of_scope"]["score"] == "mahalanobis"


def test_evaluate_reports_how_the_saved_decision_separates_out_of_scope_rows(tokenizer, tmp_path):
    section = {"score": "mahalanobis", "threshold": 15.0, "false_rejection": 0.05}
    model, _ = saved_router(tokenizer, tmp_path, section)
    rows = [(t, "billing") for t in TEXTS] + [("tell me a joke", "oos"), ("what is the weather", "oos")]
    path = tmp_path / "test.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    base = Base("tiny", model, tokenizer, model_family(model))
    out = evaluate_file(base, "route", path, oos_label="oos")
    oos = out["out_of_scope"]
    assert out["rows"] == 4 and oos["in_scope_rows"] == 4 and oos["oos_rows"] == 2
    assert oos["score"] == "mahalanobis" and oos["threshold"] == 15.0
    preds = classify(model, tokenizer, [t for t, _ in rows], "route")
    inside, outside = [p.ood_score for p in preds[:4]], [p.ood_score for p in preds[4:]]
    assert oos["oos_recall"] == pytest.approx(sum(s > 15.0 for s in outside) / 2)
    assert oos["in_scope_false_rejection"] == pytest.approx(sum(s > 15.0 for s in inside) / 4)
    assert oos["auroc"] == pytest.approx(sum((o > i) + 0.5 * (o == i) for o in outside for i in inside) / 8)
    with pytest.raises(AdapterError, match="no rows labelled 'none'"):
        evaluate_file(base, "route", path, oos_label="none")


def test_the_studio_library_keeps_a_routers_statistics_when_it_publishes(tmp_path):
    """A studio-trained router is published from its run folder: its out-of-scope statistics must go with
    it, or the library copy silently decides on the top probability."""
    import types

    from studio_fixtures import publish_random

    from adapter_core import STATS_FILE
    from studio.library import Library

    shelf = types.SimpleNamespace(home=tmp_path, library=Library(tmp_path / "lib"))
    folder = tmp_path / "scratch" / "router"
    original = shelf.library.publish
    shelf.library.publish = lambda source, name, owner=None: (
        (source / STATS_FILE).write_bytes(b"statistics"),
        original(source, name, owner=owner),
    )[1]  # the run folder has its statistics file beside the weights, as training writes it
    entry = publish_random(shelf, "minilm", "router", "classification", ["a", "b"])
    assert (entry.path / STATS_FILE).read_bytes() == b"statistics"
    assert folder.is_dir()
