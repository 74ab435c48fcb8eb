"""Drift of a window of data against a reference profile, with Evidently 0.7's default
methods and thresholds, and data quality beside it.

Method (:func:`default_method`, Evidently's ``_get_default_stattest``): with at most
1,000 reference values, Kolmogorov-Smirnov for numbers with more than 5 distinct values
(reference and window together), else chi-squared (more than 2) or a two-proportion z-test
(at most 2), the same for categories; with more reference values, the normalised
Wasserstein distance for numbers with more than 5 distinct values, else Jensen-Shannon.
Thresholds (:data:`DEFAULT_THRESHOLDS`): a p-value below 0.05 (KS: at or below), a
distance at or above 0.1.

Two ways in:

- Raw twins (:func:`ks_pvalue`, :func:`chi2_pvalue`, :func:`z_pvalue`,
  :func:`wasserstein_norm`, :func:`jensenshannon`, :func:`psi`) take two arrays and give
  Evidently's own number for that method on the same data (tests/test_drift.py checks
  each within 1e-6 against Evidently's functions).
- :func:`compare` takes a :class:`~mlops_nb.monitoring.profile.Profile` and never the
  reference data. KS (from the stored values), chi-squared, z and Jensen-Shannon (from
  frequencies) are exact. The Wasserstein distance of a large reference comes from its
  quantile sketch and its extreme values (``FeatureProfile.cdf_knots``): the reference's
  CDF is taken as linear between those points and the distance to the window's exact CDF
  is integrated exactly; the error is under 1e-3 (in units of the reference's standard
  deviation) in the tests, about 1e-5 on 100k normal rows. PSI in :func:`compare` is the common one on ten quantile bins of the reference
  (categories, and numbers with at most 5 values: per value), with Evidently's fill for
  empty bins; Evidently's own :func:`psi` bins numbers differently (Sturges' bins of both
  samples together), so it is a twin only for the raw arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_nb.exceptions import NotFoundError, UsageError
from mlops_nb.monitoring.profile import (
    FEW_VALUES,
    SMALL_REFERENCE,
    FeatureProfile,
    Profile,
    as_frame,
    as_series,
    bin_counts,
    category_key,
    count_categories,
    finite_or_none,
    numeric_values,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DISPLAY_CATEGORIES",
    "METHODS",
    "NO_TEST",
    "OTHER",
    "DriftResult",
    "FeatureDrift",
    "chi2_from_counts",
    "chi2_pvalue",
    "compare",
    "default_method",
    "feature_drift",
    "fill_zeros",
    "is_drift",
    "jensenshannon",
    "js_from_counts",
    "ks_pvalue",
    "psi",
    "psi_from_counts",
    "wasserstein_from_sketch",
    "wasserstein_norm",
    "z_from_counts",
    "z_pvalue",
]

#: Evidently 0.7's default threshold per method (p-values for ks/chi2/z, distances else).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chi2": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
METHODS = tuple(DEFAULT_THRESHOLDS)
#: Categories drawn one by one in a histogram; the rest share one "(other)" bar.
DISPLAY_CATEGORIES = 30
OTHER = "(other)"
#: Method of a feature with no usable values on one side: no test, never drifted.
NO_TEST = "none"


def default_method(kind: str, n_reference: int, n_unique: int) -> str:
    """Evidently's default method for a feature of ``kind`` ("numeric" or "categorical")
    with ``n_reference`` usable reference values and ``n_unique`` distinct values in the
    reference and the window together."""
    if kind not in ("numeric", "categorical"):
        raise UsageError(f"no drift method for kind {kind!r}: expected numeric or categorical")
    numbers = kind == "numeric" and n_unique > FEW_VALUES
    if n_reference <= SMALL_REFERENCE:
        if numbers:
            return "ks"
        return "chi2" if n_unique > 2 else "z"
    return "wasserstein" if numbers else "jensenshannon"


def is_drift(method: str, score: float, threshold: float) -> bool:
    """Evidently's verdict for ``score``: KS p-value at or below the threshold, chi2 and z
    p-values below it, distances (Wasserstein, Jensen-Shannon, PSI) at or above it."""
    if score is None or math.isnan(score) or method == NO_TEST:
        return False
    if method == "ks":
        return score <= threshold
    if method in ("chi2", "z"):
        return score < threshold
    return score >= threshold


# ---------------------------------------------------------------- statistics on counts


def chi2_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """Chi-squared p-value of ``current`` counts against ``reference`` counts scaled to
    the window's size (Evidently's ``_chi_stat_test``): 0.0 when the window has a
    category the reference never had."""
    from scipy.stats import chisquare

    expected = reference * (current.sum() / reference.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(current, expected)[1])


def z_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sided two-proportion z-test of the first category's share (Evidently's
    ``_z_stat_test``): 1.0 when both sides hold one and the same value."""
    from scipy.stats import norm

    if reference.size < 2:
        return 1.0
    n1, n2 = float(reference.sum()), float(current.sum())
    p1 = (n1 - float(reference[0])) / n1
    p2 = (n2 - float(current[0])) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def js_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) between the two count vectors' shares."""
    from scipy.spatial import distance

    return float(distance.jensenshannon(reference / reference.sum(), current / current.sum()))


def fill_zeros(shares: np.ndarray) -> np.ndarray:
    """Evidently's fill for empty bins before a logarithm: 0.0001, or a millionth of the
    smallest non-empty share when that is 0.0001 or less."""
    filled = shares.astype(np.float64, copy=True)
    smallest = filled[filled != 0].min()
    filled[filled == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return filled


def psi_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    ref = fill_zeros(reference / reference.sum())
    cur = fill_zeros(current / current.sum())
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def wasserstein_from_sketch(quantiles: np.ndarray, levels: np.ndarray, current_sorted: np.ndarray) -> float:
    """First Wasserstein distance between a distribution known by its quantile sketch
    (its CDF taken as linear between the points ``(quantiles[i], levels[i])``) and the
    sorted sample ``current_sorted``, integrated exactly: between two breakpoints the
    window's CDF is constant and the sketch's is linear."""
    n = current_sorted.size
    at = np.searchsorted(current_sorted, quantiles, side="left")
    x = np.insert(current_sorted, at, quantiles)
    from_current = np.ones(x.size, dtype=bool)
    from_current[at + np.arange(at.size)] = False
    # The window's CDF just right of x[j] counts its values up to x[j]; a tie further on
    # only starts a segment of zero width, which adds nothing.
    cdf = np.cumsum(from_current)[:-1] / n
    below, above = _sketch_cdf(x, quantiles, levels)
    left = above[:-1] - cdf
    right = below[1:] - cdf
    width = np.diff(x)
    area = width * (np.abs(left) + np.abs(right)) / 2
    # Where the difference changes sign within a segment (rarely): two triangles.
    cross = np.flatnonzero(left * right < 0)
    d0, d1 = left[cross], right[cross]
    area[cross] = width[cross] * (d0 * d0 + d1 * d1) / (2 * (np.abs(d0) + np.abs(d1)))
    return float(np.sum(area))


def _sketch_cdf(x: np.ndarray, quantiles: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sketch's CDF at the sorted points ``x``: its left and right limits. They differ
    only at an atom (a run of equal quantiles), where the CDF jumps from the run's first
    level to its last."""
    cdf = np.interp(x, quantiles, levels)
    below, above = cdf, cdf.copy()
    repeated = np.flatnonzero(quantiles[1:] == quantiles[:-1])
    if repeated.size:
        runs = np.flatnonzero(np.diff(repeated) != 1) + 1
        for run in np.split(repeated, runs):
            first, last = int(run[0]), int(run[-1]) + 1
            lo, hi = np.searchsorted(x, quantiles[first], "left"), np.searchsorted(x, quantiles[first], "right")
            below[lo:hi], above[lo:hi] = levels[first], levels[last]
    return below, above


# ---------------------------------------------------------------- raw twins of Evidently's


def _numbers(values: Any) -> np.ndarray:
    """Finite numbers of ``values`` (NaN, None and infinities dropped, as Evidently does)."""
    series = as_series(values, "values", "the values")
    numbers, _ = numeric_values(series)
    return numbers[np.isfinite(numbers)]


def _aligned_counts(reference: Any, current: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rows per value on each side over the values either side has (missing dropped)."""
    ref, _ = count_categories(as_series(reference, "values", "the reference"))
    cur, _ = count_categories(as_series(current, "values", "the current values"))
    keys = sorted(set(ref) | set(cur))
    return (
        keys,
        np.array([ref.get(k, 0) for k in keys], dtype=np.float64),
        np.array([cur.get(k, 0) for k in keys], dtype=np.float64),
    )


def ks_pvalue(reference: Any, current: Any) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (Evidently's ``ks``: scipy's ``ks_2samp``)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(_numbers(reference), _numbers(current))[1])


def chi2_pvalue(reference: Any, current: Any) -> float:
    """Chi-squared p-value of the window's categories against the reference's (Evidently's
    ``chisquare``)."""
    _, ref, cur = _aligned_counts(reference, current)
    return chi2_from_counts(ref, cur)


def z_pvalue(reference: Any, current: Any) -> float:
    """Two-proportion z-test p-value for a binary feature (Evidently's ``z``)."""
    _, ref, cur = _aligned_counts(reference, current)
    return z_from_counts(ref, cur)


def wasserstein_norm(reference: Any, current: Any) -> float:
    """First Wasserstein distance divided by the reference's standard deviation (at
    least 0.001): Evidently's ``wasserstein``."""
    from scipy.stats import wasserstein_distance

    ref, cur = _numbers(reference), _numbers(current)
    return float(wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def _binned(reference: Any, current: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data`` as counts: numbers with more than 20 distinct
    reference values on Sturges' bins of both samples together, else per value."""
    if kind == "numeric":
        ref, cur = _numbers(reference), _numbers(current)
        if np.unique(ref).size > 20:
            edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
            return np.histogram(ref, edges)[0].astype(np.float64), np.histogram(cur, edges)[0].astype(np.float64)
        reference, current = ref, cur
    elif kind != "categorical":
        raise UsageError(f"kind must be numeric or categorical, not {kind!r}")
    _, ref_counts, cur_counts = _aligned_counts(reference, current)
    return ref_counts, cur_counts


def jensenshannon(reference: Any, current: Any, kind: str) -> float:
    """Jensen-Shannon distance (Evidently's ``jensenshannon``, natural log)."""
    return js_from_counts(*_binned(reference, current, kind))


def psi(reference: Any, current: Any, kind: str) -> float:
    """Population stability index on Evidently's bins (Evidently's ``psi``)."""
    return psi_from_counts(*_binned(reference, current, kind))


# ---------------------------------------------------------------- results


@dataclass
class FeatureDrift:
    """One feature of a window against its reference profile.

    ``score`` is the p-value (ks, chi2, z) or distance (wasserstein, jensenshannon) of
    ``method`` (``"none"`` and NaN when a side has no usable value); ``rows`` the window's
    usable values; ``missing_*`` rates; ``out_of_range`` numbers outside the reference's
    [min, max]; ``unseen`` categories the reference never had, with their rows;
    ``invalid`` text values in a numeric column (counted as missing). Histograms:
    ``{"edges", "counts"}`` on the reference's display bins (window values clipped into
    the outer bins) or ``{"categories", "counts"}`` in the same order on both sides.
    """

    feature: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    psi: float | None
    rows: int
    missing_reference: float
    missing_current: float
    out_of_range: int = 0
    unseen: dict[str, int] = field(default_factory=dict)
    reference_hist: dict[str, list[Any]] | None = None
    current_hist: dict[str, list[Any]] | None = None
    invalid: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values (NaN scores as ``None``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["score"] = finite_or_none(self.score)
        out["psi"] = finite_or_none(self.psi)
        out["drifted"] = bool(self.drifted)
        return out


@dataclass
class DriftResult:
    """A window against a profile: per feature (profile order), the predictions if both
    sides have them, the drifted features' names, their ``share`` of the features
    compared (Evidently's dataset drift is ``share >= 0.5``), the profiled columns the
    window lacks (``missing_columns``), the window's columns the profile does not know
    (``extra_columns``) and the window's ``rows``."""

    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drifted: list[str]
    share: float
    missing_columns: list[str]
    rows: int = 0
    extra_columns: list[str] = field(default_factory=list)

    def feature(self, name: str) -> FeatureDrift:
        """The result for feature ``name``; :class:`NotFoundError` if it was not compared."""
        for f in self.features:
            if f.feature == name:
                return f
        raise NotFoundError(f"no drift result for feature {name!r}: it is not in both the profile and the window")

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values."""
        return {
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "drifted": list(self.drifted),
            "share": self.share,
            "missing_columns": list(self.missing_columns),
            "rows": self.rows,
            "extra_columns": list(self.extra_columns),
        }


# ---------------------------------------------------------------- comparing with a profile


def compare(
    profile: Profile, current: Any, predictions: Any = None, *, thresholds: Mapping[str, float] | None = None
) -> DriftResult:
    """Drift and data quality of the window ``current`` (read like
    :func:`~mlops_nb.monitoring.profile.build_profile`'s data) against ``profile``, and of
    ``predictions`` (one a row) against the profile's predictions when both exist.
    ``thresholds`` overrides :data:`DEFAULT_THRESHOLDS` per method.

    Uses only the profile. A profiled column the window lacks is listed in
    ``missing_columns``, not raised. :class:`UsageError` for a window with no rows.
    """
    frame = as_frame(current, "the current data")
    if frame.shape[0] == 0:
        raise UsageError("the current data has no rows: there is nothing to compare with the reference profile")
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    have = set(frame.columns)
    results = [feature_drift(fp, frame[fp.name], limits) for fp in profile.features if fp.name in have]
    prediction = None
    if predictions is not None and profile.prediction is not None:
        series = as_series(predictions, "prediction")
        if len(series):
            prediction = feature_drift(profile.prediction, series, limits)
    drifted = [r.feature for r in results if r.drifted]
    known = set(profile.columns)
    return DriftResult(
        features=results,
        prediction=prediction,
        drifted=drifted,
        share=len(drifted) / len(results) if results else 0.0,
        missing_columns=[c for c in profile.columns if c not in have],
        rows=int(frame.shape[0]),
        extra_columns=[c for c in frame.columns if c not in known],
    )


def feature_drift(fp: FeatureProfile, column: pd.Series, thresholds: Mapping[str, float] | None = None) -> FeatureDrift:
    """One window column against its feature profile (see :func:`compare`)."""
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    if fp.kind == "numeric":
        return _numeric_drift(fp, column, limits)
    return _categorical_drift(fp, column, limits)


def _verdict(drift: FeatureDrift, method: str, score: float, limits: Mapping[str, float]) -> FeatureDrift:
    drift.method, drift.score = method, score
    drift.threshold = limits.get(method, math.nan)
    drift.drifted = is_drift(method, score, drift.threshold)
    return drift


def _numeric_drift(fp: FeatureProfile, column: pd.Series, limits: Mapping[str, float]) -> FeatureDrift:
    values, invalid = numeric_values(column)
    cur = values[np.isfinite(values)]
    cur.sort()
    n = int(cur.size)
    drift = FeatureDrift(
        feature=fp.name,
        kind="numeric",
        method=NO_TEST,
        score=math.nan,
        threshold=math.nan,
        drifted=False,
        psi=None,
        rows=n,
        missing_reference=fp.missing_rate,
        missing_current=(values.size - n) / values.size if values.size else 0.0,
        invalid=invalid,
    )
    if fp.hist_edges is not None and fp.hist_counts is not None:
        drift.reference_hist = {"edges": list(fp.hist_edges), "counts": list(fp.hist_counts)}
        drift.current_hist = {"edges": list(fp.hist_edges), "counts": bin_counts(cur, fp.hist_edges)}
    if not n or not fp.count or fp.minimum is None or fp.maximum is None:
        return drift
    below = np.searchsorted(cur, fp.minimum, side="left")
    drift.out_of_range = int(below + n - np.searchsorted(cur, fp.maximum, side="right"))
    few = _few_value_counts(fp, cur)
    n_unique = len(few[0]) if few is not None else max(fp.n_unique, FEW_VALUES + 1)
    method = default_method("numeric", fp.count, n_unique)
    if few is not None:
        _, ref_counts, cur_counts = few
        drift.psi = psi_from_counts(ref_counts, cur_counts)
        return _verdict(drift, method, _from_counts(method, ref_counts, cur_counts), limits)
    if fp.psi_edges is not None and fp.psi_counts is not None:
        cur_bins = bin_counts(cur, np.concatenate(([-np.inf], fp.psi_edges, [np.inf])))
        drift.psi = psi_from_counts(np.asarray(fp.psi_counts, dtype=np.float64), np.asarray(cur_bins, np.float64))
    if method == "ks" and fp.sample is not None:
        from scipy.stats import ks_2samp

        return _verdict(drift, method, float(ks_2samp(np.asarray(fp.sample), cur)[1]), limits)
    # A large reference (or an old profile without its values): the sketch.
    distance = wasserstein_from_sketch(*fp.cdf_knots(), cur)
    return _verdict(drift, "wasserstein", distance / max(fp.std or 0.0, 0.001), limits)


def _few_value_counts(fp: FeatureProfile, cur: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Counts per value on both sides when the reference has frequencies and the two
    sides together have at most :data:`FEW_VALUES` distinct values; else ``None``."""
    if fp.frequencies is None:
        return None
    starts = np.flatnonzero(np.concatenate(([True], cur[1:] != cur[:-1])))
    if starts.size > FEW_VALUES:
        return None
    sizes = np.diff(np.concatenate((starts, [cur.size])))
    current = {category_key(cur[i]): int(k) for i, k in zip(starts, sizes)}
    keys = list(fp.frequencies) + [k for k in current if k not in fp.frequencies]
    if len(keys) > FEW_VALUES:
        return None
    return (
        keys,
        np.array([fp.frequencies.get(k, 0) for k in keys], dtype=np.float64),
        np.array([current.get(k, 0) for k in keys], dtype=np.float64),
    )


def _from_counts(method: str, reference: np.ndarray, current: np.ndarray) -> float:
    if method == "chi2":
        return chi2_from_counts(reference, current)
    if method == "z":
        return z_from_counts(reference, current)
    return js_from_counts(reference, current)


def _categorical_drift(fp: FeatureProfile, column: pd.Series, limits: Mapping[str, float]) -> FeatureDrift:
    counts, missing = count_categories(column)
    ref = dict(fp.frequencies or {})
    if ref and set(ref) <= {"True", "False"}:
        # A boolean feature sent as 1/0 (JSON from another client): the same values.
        named = {"1": "True", "0": "False"}
        merged: dict[str, int] = {}
        for key, n in counts.items():
            merged[named.get(key, key)] = merged.get(named.get(key, key), 0) + n
        counts = merged
    if fp.other:
        # Categories beyond the profile's cap share one bucket on both sides; a window's
        # category outside the kept ones may be one of them, so none is called unseen.
        pooled = sum(n for k, n in counts.items() if k not in ref)
        counts = {k: n for k, n in counts.items() if k in ref}
        ref[OTHER], counts[OTHER] = fp.other, pooled
    unseen = {k: n for k, n in counts.items() if k not in ref}
    keys = list(ref) + list(unseen)  # counts are most frequent first already
    ref_counts = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    cur_counts = np.array([counts.get(k, 0) for k in keys], dtype=np.float64)
    n, total = int(cur_counts.sum()), len(column)
    drift = FeatureDrift(
        feature=fp.name,
        kind="categorical",
        method=NO_TEST,
        score=math.nan,
        threshold=math.nan,
        drifted=False,
        psi=None,
        rows=n,
        missing_reference=fp.missing_rate,
        missing_current=missing / total if total else 0.0,
        unseen=unseen,
    )
    drift.reference_hist, drift.current_hist = _category_hists(keys, ref_counts, cur_counts)
    if not n or not fp.count:
        return drift
    method = default_method("categorical", fp.count, len(keys))
    drift.psi = psi_from_counts(ref_counts, cur_counts)
    return _verdict(drift, method, _from_counts(method, ref_counts, cur_counts), limits)


def _category_hists(
    keys: list[str], ref: np.ndarray, cur: np.ndarray
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Both sides' bars in one order; past :data:`DISPLAY_CATEGORIES`, one "(other)" bar."""
    shown = keys[:DISPLAY_CATEGORIES]
    ref_shown, cur_shown = ref[: len(shown)].astype(int).tolist(), cur[: len(shown)].astype(int).tolist()
    if len(keys) > DISPLAY_CATEGORIES:
        shown = [*shown, OTHER]
        ref_shown.append(int(ref[DISPLAY_CATEGORIES:].sum()))
        cur_shown.append(int(cur[DISPLAY_CATEGORIES:].sum()))
    return {"categories": list(shown), "counts": ref_shown}, {"categories": list(shown), "counts": cur_shown}
