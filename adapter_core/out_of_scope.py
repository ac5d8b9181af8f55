"""Out-of-scope scores of a classification adapter: how far a message lies from what the router was
trained on. Higher means more likely out of scope; a message scoring above the adapter's threshold goes
to the fallback.

- `msp`: 1 - the top softmax probability (Hendrycks & Gimpel 2017); needs nothing but the logits.
- `energy`: -logsumexp of the logits (Liu et al. 2020); needs no statistics.
- `mahalanobis`: the distance of the pooled features to the nearest class mean under one covariance
  shared by the classes (Lee et al. 2018; Podolskiy et al. 2021), fitted on the training rows at the end
  of training with Ledoit-Wolf shrinkage so that it is invertible however few the rows.
- `relative_mahalanobis`: that distance minus the distance to one Gaussian fitted on all training rows
  (Ren et al. 2021), which removes what the features of every in-scope message share, and so tells
  near out-of-scope messages (close to a trained intent) apart better.
- `knn`: 1 - the cosine similarity to the k-th nearest training row (Sun et al. 2022), over a bounded
  bank of the training rows' L2-normalised features; k = 1 (`KNN_K`), chosen on a second split of
  held-out BANKING77 intents (bench/RESULTS.md); a file saved before k was stored used 10.
- `fused`: relative Mahalanobis plus energy, each standardised by its mean and spread on the training
  rows. The two read different things (where the features lie; how strongly the head answers), so a
  message far from every intent *or* one the head hesitates on scores high.
- `energy_knn`: the default: energy plus kNN, standardised the same way (kNN on each training row
  without itself). Measured on three splits of held-out BANKING77 intents, energy alone failed on one
  split and kNN alone on another; their sum was within a point of the better of the two on each.

What the last four need (`Stats`: class means, precision matrices, feature bank) is saved beside the
adapter's weights as `STATS_FILE` (io.py); the schema check of that file is `schema.check_stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

SCORES = ("msp", "energy", "mahalanobis", "relative_mahalanobis", "knn", "fused", "energy_knn")
STATS_SCORES = ("mahalanobis", "relative_mahalanobis", "knn", "fused", "energy_knn")  # the scores that need `Stats`
DEFAULT_SCORE = "energy_knn"  # the best measured on BANKING77 with the default recipe (bench/RESULTS.md)
FALSE_REJECTION = 0.05  # the share of in-scope messages the threshold may send to the fallback
MAX_FALSE_REJECTION = 0.5  # the most a caller may ask for: past it, the router rejects more than it keeps
LEGACY_SCORE = "msp"  # what an adapter saved without a score name used
MAX_BANK = 8192  # training rows kept for kNN: 12 MB of float32 at MiniLM's width
MAX_FIT_ROWS = 20_000  # training rows the statistics are fitted on (a pass over them costs a forward each)
KNN_K = 1  # the neighbour the kNN scores read: the nearest
LEGACY_KNN_K = 10  # what a statistics file saved without `knn_k` used


@dataclass
class Stats:
    """What the distance scores need, fitted on a router's training rows."""

    means: torch.Tensor  # (labels, hidden): each class's mean pooled feature
    precision: torch.Tensor  # (hidden, hidden): the inverse of the shared covariance
    bank: torch.Tensor  # (rows, hidden): L2-normalised pooled features of up to MAX_BANK training rows
    # One Gaussian over all training rows, for relative_mahalanobis (None in a file saved without it)
    background_mean: torch.Tensor | None = None  # (hidden,)
    background_precision: torch.Tensor | None = None  # (hidden, hidden)
    # For `fused` (None in a file saved without it): (4,) the mean and standard deviation of
    # relative_mahalanobis, then of energy, over the training rows
    fusion: torch.Tensor | None = None
    knn_k: torch.Tensor | None = None  # (1,): the neighbour knn reads (None in a file saved without it: 10)
    # For `energy_knn` (None in a file saved without it): (4,) the mean and standard deviation of knn (each
    # training row scored without itself), then of energy, over the training rows
    knn_fusion: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in vars(self).items() if v is not None}

    def supports(self, score: str) -> bool:
        if score == "fused":
            return self.fusion is not None and self.background_precision is not None
        if score == "energy_knn":
            return self.knn_fusion is not None
        return score != "relative_mahalanobis" or self.background_precision is not None


@dataclass
class Detector:
    """An adapter's out-of-scope decision: a score, the threshold above which a message is out of scope,
    and the statistics the score needs (None for msp and energy)."""

    score: str
    threshold: float
    stats: Stats | None = None


def fit_stats(
    features: torch.Tensor, labels: torch.Tensor, num_labels: int, seed: int = 0, logits: torch.Tensor | None = None
) -> Stats:
    """`Stats` from the pooled features (rows, hidden) of training rows and their label indices, and with
    their `logits` (rows, labels) what `fused` needs. A label with no row gets the mean of all rows (its
    class then attracts nothing an existing class would not)."""
    from sklearn.covariance import LedoitWolf  # imported here: only training needs it

    x = features.detach().to("cpu", torch.float64)
    y = labels.detach().to("cpu", torch.long)
    counts = torch.bincount(y, minlength=num_labels).to(x.dtype)
    sums = torch.zeros(num_labels, x.shape[1], dtype=x.dtype).index_add_(0, y, x)
    means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], x.mean(0))
    centered = (x - means[y]).numpy()
    lw = LedoitWolf(assume_centered=True).fit(centered)
    background = LedoitWolf().fit(x.numpy())
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:MAX_BANK]
    bank = F.normalize(x[keep], dim=-1)
    stats = Stats(
        means.float(),
        torch.from_numpy(lw.precision_).float(),
        bank.float(),
        torch.from_numpy(background.location_).float(),
        torch.from_numpy(background.precision_).float(),
        knn_k=torch.tensor([float(KNN_K)]),
    )
    if logits is not None and len(x) > 1:
        energy = _energy(logits)
        stats.fusion = _moments(relative_mahalanobis(x.float(), stats), energy)
        stats.knn_fusion = _moments(_knn_without_self(x.float(), keep, stats), energy)
    return stats


def _moments(*parts: torch.Tensor) -> torch.Tensor:
    """(2 * parts,): each part's mean and spread over the training rows, in turn; what a fusion saves."""
    return torch.stack([f(p.double()) for p in parts for f in (torch.mean, _spread)]).float()


def _standardised_sum(parts: tuple[torch.Tensor, ...], moments: torch.Tensor) -> torch.Tensor:
    """The parts, each less its training mean and over its training spread (`_moments`), summed."""
    m = moments.tolist()
    return sum((p.cpu() - m[2 * i]) / m[2 * i + 1] for i, p in enumerate(parts))


def _knn_without_self(x: torch.Tensor, keep: torch.Tensor, stats: Stats, chunk: int = 2048) -> torch.Tensor:
    """knn of the training rows the bank was drawn from, each row's own entry in the bank left out (it
    would be its own nearest neighbour), in chunks so that no (rows, bank) matrix is built whole."""
    own = torch.full((len(x),), -1, dtype=torch.long)
    own[keep] = torch.arange(len(keep))
    k = max(1, min(neighbour(stats), len(stats.bank) - 1))
    out = []
    for start in range(0, len(x), chunk):
        sims = F.normalize(x[start : start + chunk], dim=-1) @ stats.bank.T
        entry = own[start : start + chunk]
        rows = (entry >= 0).nonzero()[:, 0]
        sims[rows, entry[rows]] = -2  # below any cosine similarity
        out.append(1 - sims.topk(k, dim=-1).values[:, -1])
    return torch.cat(out)


def _spread(values: torch.Tensor) -> torch.Tensor:
    """The standard deviation, kept above zero so that a constant score divides safely."""
    return values.std().clamp(min=1e-6)


def scores(
    which: str | tuple[str, ...], features: torch.Tensor, logits: torch.Tensor, stats: Stats | None
) -> dict[str, torch.Tensor]:
    """Score name -> (rows,) out-of-scope scores of pooled `features` (rows, hidden) and `logits`
    (rows, labels), for each score in `which`. The distance scores need `stats`."""
    names = (which,) if isinstance(which, str) else which
    logits = logits.float()
    out = {}
    for name in names:
        if name == "msp":
            out[name] = 1 - logits.softmax(-1).max(-1).values
        elif name == "energy":
            out[name] = _energy(logits)
        elif name in STATS_SCORES:
            if stats is None or not stats.supports(name):
                raise ValueError(f"The {name} score needs the training statistics; none were given.")
            out[name] = FUSIONS[name](features, logits, stats) if name in FUSIONS else DISTANCES[name](features, stats)
        else:
            raise ValueError(f"Unknown out-of-scope score {name!r}; choose one of {', '.join(SCORES)}.")
    return {k: torch.nan_to_num(v, nan=float("inf")) for k, v in out.items()}  # NaN logits: out of scope


def mahalanobis(features: torch.Tensor, stats: Stats) -> torch.Tensor:
    """min over classes c of (x - mean_c)^T P (x - mean_c)."""
    return _distances(features, stats.means, stats.precision).min(-1).values


def relative_mahalanobis(features: torch.Tensor, stats: Stats) -> torch.Tensor:
    """The Mahalanobis distance to the nearest class minus the one to the background Gaussian."""
    background = _distances(features, stats.background_mean[None], stats.background_precision)[:, 0]
    return mahalanobis(features, stats) - background


def fused(features: torch.Tensor, logits: torch.Tensor, stats: Stats) -> torch.Tensor:
    """relative_mahalanobis and energy, each less its training mean and over its training spread, summed."""
    return _standardised_sum((relative_mahalanobis(features, stats), _energy(logits)), stats.fusion)


def energy_knn(features: torch.Tensor, logits: torch.Tensor, stats: Stats) -> torch.Tensor:
    """knn and energy, each less its training mean and over its training spread, summed."""
    return _standardised_sum((knn(features, stats), _energy(logits)), stats.knn_fusion)


def _energy(logits: torch.Tensor) -> torch.Tensor:
    return -torch.logsumexp(logits.float(), -1)


def _distances(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """(rows, means) squared Mahalanobis distances under `precision`, expanded so that no
    (rows, means, hidden) tensor is built."""
    x = features.to(precision.device, torch.float32)
    xp = x @ precision
    mp = means @ precision
    return ((xp * x).sum(-1, keepdim=True) - 2 * xp @ means.T + (mp * means).sum(-1)).clamp(min=0)


def neighbour(stats: Stats) -> int:
    """The k of the k-th nearest row that knn reads: the saved one, or 10 for a file saved without it."""
    return LEGACY_KNN_K if stats.knn_k is None else int(stats.knn_k.item())


def knn(features: torch.Tensor, stats: Stats) -> torch.Tensor:
    """1 - the cosine similarity of each row to its k-th nearest row of the bank."""
    x = F.normalize(features.to(stats.bank.device, torch.float32), dim=-1)
    k = max(1, min(neighbour(stats), len(stats.bank)))
    return 1 - (x @ stats.bank.T).topk(k, dim=-1).values[:, -1]


DISTANCES = {"mahalanobis": mahalanobis, "relative_mahalanobis": relative_mahalanobis, "knn": knn}
FUSIONS = {"fused": fused, "energy_knn": energy_knn}
