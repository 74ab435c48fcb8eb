"""Reference profiles: a compact summary of the data a model version was trained on, from
which every later window of served traffic is checked without re-reading that data.

Per numeric feature: count, missing, distinct values, min/max/mean/std, a quantile sketch
and the :data:`EXTREMES` smallest and largest values (together they give the reference's
CDF for the normalised Wasserstein distance of large references), ten quantile bins with
their exact counts (PSI), a 20-bin display histogram, every value when there are at most
:data:`SMALL_REFERENCE` of them (an exact Kolmogorov-Smirnov test), and the frequencies of
columns with at most :data:`FEW_VALUES` distinct values (chi-squared, z and Jensen-Shannon
on them are exact). Per categorical feature: the category frequencies.

Kinds follow Evidently 0.7's inference so that both pick the same test on the same data:
floats are numeric; integers are numeric unless they hold at most
:data:`INTEGER_CATEGORIES` distinct values (then categories); booleans, strings and
pandas categoricals are categories. Missing means NaN, None or an infinity: Evidently
drops all three before its tests, and so do we.

pandas is imported where it is used: the server extension imports the monitor at start-up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlops_nb.exceptions import NotFoundError, UsageError, one_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "EXTREMES",
    "FEW_VALUES",
    "HIST_BINS",
    "INTEGER_CATEGORIES",
    "MAX_CATEGORIES",
    "PSI_BINS",
    "QUANTILE_LEVELS",
    "SMALL_REFERENCE",
    "FeatureProfile",
    "Profile",
    "as_frame",
    "as_series",
    "bin_counts",
    "build_profile",
    "category_key",
    "count_categories",
    "feature_kind",
    "finite_or_none",
    "numeric_values",
    "profile_feature",
]

#: Evidently's switch between tests (at most this many reference values: KS, chi-squared,
#: z) and distances (more: normalised Wasserstein, Jensen-Shannon). The profile keeps every
#: value of a numeric feature up to this count, so KS is exact.
SMALL_REFERENCE = 1000
#: Numeric features with at most this many distinct values also keep their frequencies
#: (Evidently tests such columns as categories).
FEW_VALUES = 5
#: Integer columns with at most this many distinct values are categories (Evidently 0.7's
#: ``INTEGER_CARDINALITY_LIMIT``).
INTEGER_CATEGORIES = 10
#: A numeric feature keeps this many of its smallest and of its largest values: the
#: sketch's CDF is exact (steps) there, where a few far values weigh most in a distance.
EXTREMES = 16
#: A categorical feature keeps its most frequent categories up to this many; the rest are
#: pooled (``FeatureProfile.other``) so that an ID-like column cannot bloat the profile.
MAX_CATEGORIES = 10_000
HIST_BINS = 20
PSI_BINS = 10
_TAIL = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4)
#: The quantile sketch's levels: every 0.1 %, and finer in both tails, where a uniform grid
#: would leave the most room for error in the Wasserstein distance (tests/test_drift.py
#: measures that error: under 1e-3 of a standard deviation, about 1e-5 on 100k normal rows).
QUANTILE_LEVELS: tuple[float, ...] = tuple(
    float(x) for x in np.unique(np.concatenate([np.linspace(0.0, 1.0, 1001), _TAIL, 1.0 - np.asarray(_TAIL)]))
)
_PROFILE_FORMAT = 1

Kind = Literal["numeric", "categorical"]


@dataclass
class FeatureProfile:
    """One feature of the reference data (or the model's predictions on it).

    ``count`` values were usable, ``missing`` were not (NaN, None, an infinity, or text in
    a numeric column: ``invalid`` of them). ``std`` is the population standard deviation
    (ddof 0, as Evidently norms the Wasserstein distance). ``quantiles`` sit at
    ``quantile_levels`` (``None``: :data:`QUANTILE_LEVELS`), interpolated at Hazen's
    positions ``p * count - 0.5``, so the sketch's CDF runs through the middles of the
    data's steps; ``lowest`` and ``highest`` are the :data:`EXTREMES` smallest and largest
    values (:meth:`cdf_knots` joins the three). ``psi_edges`` cut the data into up to :data:`PSI_BINS` quantile bins
    ``[e[k-1], e[k])`` (outer bins open) holding ``psi_counts`` values. ``hist_counts``
    use the same rule on ``hist_edges``. ``sample``: every value (sorted) when ``count <=
    SMALL_REFERENCE``. ``frequencies``: category (see :func:`category_key`) -> rows, most
    frequent first, for categories and for numbers with at most :data:`FEW_VALUES`
    distinct values (ascending); ``other`` rows fell in categories beyond
    :data:`MAX_CATEGORIES`.
    """

    name: str
    kind: Kind
    count: int
    missing: int
    n_unique: int
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: list[float] | None = None
    hist_edges: list[float] | None = None
    hist_counts: list[int] | None = None
    sample: list[float] | None = None
    frequencies: dict[str, int] | None = None
    quantile_levels: list[float] | None = None
    psi_edges: list[float] | None = None
    psi_counts: list[int] | None = None
    lowest: list[float] | None = None
    highest: list[float] | None = None
    other: int = 0
    invalid: int = 0

    @property
    def rows(self) -> int:
        """Rows the feature was profiled on (usable and missing)."""
        return self.count + self.missing

    @property
    def missing_rate(self) -> float:
        """The share of rows without a usable value (0.0 for no rows)."""
        return self.missing / self.rows if self.rows else 0.0

    @property
    def levels(self) -> np.ndarray:
        """The quantile sketch's levels as an array."""
        return np.asarray(self.quantile_levels if self.quantile_levels is not None else QUANTILE_LEVELS)

    def cdf_knots(self) -> tuple[np.ndarray, np.ndarray]:
        """Points ``(values, levels)`` of the feature's CDF, linear between them (an atom is
        two points with one value): the exact steps of ``sample`` when it was kept; else
        the exact steps of the ``lowest`` and ``highest`` values with the quantile sketch
        between them. Empty arrays for a feature without numbers."""
        if self.sample is not None:
            return _steps(np.asarray(self.sample, dtype=np.float64), 0, self.count)
        if self.quantiles is None or not self.count:
            return np.empty(0), np.empty(0)
        n = self.count
        low = np.asarray(self.lowest or [], dtype=np.float64)
        high = np.asarray(self.highest or [], dtype=np.float64)
        levels = self.levels
        inside = (levels > low.size / n) & (levels < 1 - high.size / n)
        low_q, low_l = _steps(low, 0, n)
        high_q, high_l = _steps(high, n - high.size, n)
        return (
            np.concatenate([low_q, np.asarray(self.quantiles)[inside], high_q]),
            np.concatenate([low_l, levels[inside], high_l]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values; ``None`` fields are left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureProfile:
        """The feature :meth:`to_dict` wrote (unknown keys are ignored, for newer profiles)."""
        known = {f.name for f in fields(cls)}
        try:
            feature = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise UsageError(f"not a reference profile's feature ({one_line(exc)}): build it again") from None
        if feature.kind not in ("numeric", "categorical"):
            raise UsageError(f"feature {feature.name!r} has kind {feature.kind!r}: expected numeric or categorical")
        return feature


@dataclass
class Profile:
    """The reference profile of a model version: its features in the data's column order,
    the profile of its predictions (``None`` when the model gave none), the number of
    ``rows`` profiled, where the data came from (``source``) and when (``created``, ISO
    8601 UTC)."""

    features: list[FeatureProfile]
    prediction: FeatureProfile | None = None
    rows: int = 0
    source: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def columns(self) -> list[str]:
        """The profiled feature names, in order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureProfile:
        """The profile of feature ``name``; :class:`NotFoundError` if it has none."""
        for f in self.features:
            if f.name == name:
                return f
        raise NotFoundError(f"the reference profile has no feature {name!r}; it has: {', '.join(self.columns)}")

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready values (what :meth:`to_json` writes)."""
        return {
            "format": _PROFILE_FORMAT,
            "rows": self.rows,
            "source": self.source,
            "created": self.created,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile :meth:`to_dict` wrote; :class:`UsageError` for anything else."""
        if not isinstance(data, Mapping) or not isinstance(data.get("features"), list):
            raise UsageError("not a reference profile (no list of features): build it again with build_profile")
        prediction = data.get("prediction")
        return cls(
            features=[FeatureProfile.from_dict(f) for f in data["features"]],
            prediction=FeatureProfile.from_dict(prediction) if prediction else None,
            rows=int(data.get("rows") or 0),
            source=str(data.get("source") or ""),
            created=str(data.get("created") or ""),
        )

    def to_json(self) -> str:
        """The profile as JSON text (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Profile:
        """The profile :meth:`to_json` wrote; :class:`UsageError` for text that is not one."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"the reference profile is not JSON ({one_line(exc)}): build it again") from None
        return cls.from_dict(data)


# ---------------------------------------------------------------- reading data


def as_frame(data: Any, what: str = "the data") -> pd.DataFrame:
    """``data`` as a DataFrame with text column names: a DataFrame or Series, a 1-D
    (one column) or 2-D numpy array, a list of rows, of records (dicts) or of values, or
    a dict of columns. Arrays and lists of rows get columns ``"0".."n-1"``.
    :class:`UsageError` (one line, naming ``what``) for anything else."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, pd.Series):
        frame = data.to_frame(name=str(data.name) if data.name is not None else "0")
    elif isinstance(data, np.ndarray):
        if data.ndim > 2:
            raise UsageError(f"{what} is a {data.ndim}-D array: give a 2-D array (rows of features) or a DataFrame")
        frame = pd.DataFrame(data.reshape(-1, 1) if data.ndim < 2 else data)
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(dict(data))
        except (ValueError, TypeError) as exc:
            raise UsageError(
                f"{what} is a dict that is not a table ({one_line(exc)}): give columns of equal length"
            ) from None
    elif isinstance(data, (list, tuple)):
        frame = _frame_from_list(list(data), what)
    else:
        raise UsageError(
            f"cannot read {what} from a {type(data).__name__}: give a pandas DataFrame, "
            "a numpy array, a list of rows or a dict of columns"
        )
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(f"{what} has the column name(s) {', '.join(twice)} more than once: name each column once")
    if names != list(frame.columns):
        frame = frame.set_axis(names, axis=1)
    return frame


def _frame_from_list(rows: list[Any], what: str) -> pd.DataFrame:
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    first = rows[0]
    if isinstance(first, Mapping):
        return pd.DataFrame.from_records(rows)
    if isinstance(first, (list, tuple, np.ndarray)):
        lengths = {len(r) if isinstance(r, (list, tuple, np.ndarray)) else -1 for r in rows}
        if len(lengths) != 1 or -1 in lengths:
            raise UsageError(
                f"{what} has rows of different lengths ({sorted(lengths)}): give one value a feature a row"
            )
        return pd.DataFrame(rows)
    return pd.DataFrame({"0": rows})


def as_series(values: Any, name: str, what: str = "the predictions") -> pd.Series:
    """One column of values (a list, a 1-D array, a one-column 2-D array or DataFrame, a
    Series) as a Series called ``name``; :class:`UsageError` for several columns."""
    import pandas as pd

    if isinstance(values, pd.Series):
        return values.rename(name).reset_index(drop=True)
    frame = as_frame(values, what)
    if frame.shape[1] != 1:
        raise UsageError(f"{what} have {frame.shape[1]} columns: give one value a row (for example the class label)")
    return frame.iloc[:, 0].rename(name).reset_index(drop=True)


def category_key(value: Any) -> str:
    """The text a category is counted under, the same whatever type carried it: ``3``,
    ``3.0`` and ``"3"`` are all ``"3"``; other floats are their shortest repr; booleans
    ``"True"``/``"False"`` (a JSON request may turn an integer column into floats)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def count_categories(series: pd.Series) -> tuple[dict[str, int], int]:
    """Rows per category (:func:`category_key`), most frequent first, and the missing rows."""
    counts = series.value_counts(dropna=True, sort=False)
    out: dict[str, int] = {}
    for value, n in zip(counts.index.tolist(), counts.to_numpy().tolist()):
        if n:
            key = category_key(value)
            out[key] = out.get(key, 0) + int(n)
    ordered = dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
    return ordered, len(series) - sum(ordered.values())


def numeric_values(series: pd.Series) -> tuple[np.ndarray, int]:
    """The column as float64 (NaN for missing) and how many values were not numbers
    (text in a numeric column: counted as missing, reported apart)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), 0
    numbers = pd.to_numeric(series, errors="coerce")
    invalid = int(series.notna().sum() - numbers.notna().sum())
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan), invalid


def bin_counts(sorted_values: np.ndarray, edges: Any) -> list[int]:
    """Values per bin ``[e[k], e[k+1])`` of ``edges`` (the last bin closed), values outside
    clipped into the outer bins: one rule for the reference and every window."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    cuts = np.searchsorted(sorted_values, inner, side="left")
    return np.diff(np.concatenate(([0], cuts, [sorted_values.size]))).astype(np.int64).tolist()


def _steps(sorted_values: np.ndarray, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF's steps at ``sorted_values`` (ranks ``first``.. of ``n`` values):
    two points a value, the CDF just below it and at it."""
    ranks = np.arange(first, first + sorted_values.size, dtype=np.float64)
    return np.repeat(sorted_values, 2), np.column_stack([ranks / n, (ranks + 1) / n]).ravel()


def _hazen(sorted_values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles at ``levels``, interpolated at positions ``p * n - 0.5`` (clamped)."""
    n = sorted_values.size
    pos = np.clip(levels * n - 0.5, 0.0, n - 1.0)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    frac = pos - low
    return sorted_values[low] + frac * (sorted_values[high] - sorted_values[low])


# ---------------------------------------------------------------- profiling


def _moments(values: np.ndarray, scale: float) -> tuple[float, float]:
    """Mean and population standard deviation; scaled down first where squares of the
    values would overflow (near 1e154 and beyond) and the plain ones are not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(values.mean()), float(values.std())
    if math.isfinite(mean) and math.isfinite(std):
        return mean, std
    scaled = values / scale
    return float(scaled.mean()) * scale, float(scaled.std()) * scale


def _numeric_profile(name: str, values: np.ndarray, invalid: int) -> FeatureProfile:
    finite = values[np.isfinite(values)]
    finite.sort()
    count = int(finite.size)
    profile = FeatureProfile(name, "numeric", count, int(values.size) - count, 0, invalid=invalid)
    if not count:
        return profile
    starts = np.flatnonzero(np.concatenate(([True], finite[1:] != finite[:-1])))
    low, high = float(finite[0]), float(finite[-1])
    profile.n_unique = int(starts.size)
    profile.minimum, profile.maximum = low, high
    profile.mean, profile.std = _moments(finite, max(abs(low), abs(high)))
    profile.quantiles = _hazen(finite, np.asarray(QUANTILE_LEVELS)).tolist()
    if low == high:  # one value: a unit-wide range keeps the bins well defined
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HIST_BINS + 1)
    profile.hist_edges, profile.hist_counts = edges.tolist(), bin_counts(finite, edges)
    cuts = np.unique(_hazen(finite, np.arange(1, PSI_BINS) / PSI_BINS))
    profile.psi_edges = cuts.tolist()
    profile.psi_counts = bin_counts(finite, np.concatenate(([-np.inf], cuts, [np.inf])))
    if count <= SMALL_REFERENCE:
        profile.sample = finite.tolist()
    else:
        tail = min(EXTREMES, count // 2)
        profile.lowest, profile.highest = finite[:tail].tolist(), finite[count - tail :].tolist()
    if profile.n_unique <= FEW_VALUES:
        sizes = np.diff(np.concatenate((starts, [count])))
        profile.frequencies = {category_key(finite[i]): int(n) for i, n in zip(starts, sizes)}
    return profile


def _categorical_profile(name: str, series: pd.Series) -> FeatureProfile:
    counts, missing = count_categories(series)
    kept = dict(list(counts.items())[:MAX_CATEGORIES])
    return FeatureProfile(
        name,
        "categorical",
        count=sum(counts.values()),
        missing=missing,
        n_unique=len(counts),
        frequencies=kept,
        other=sum(counts.values()) - sum(kept.values()),
    )


def feature_kind(series: pd.Series) -> Kind:
    """``numeric`` or ``categorical`` by the column's type, as Evidently 0.7 infers it
    (integers with few distinct values are decided by :func:`profile_feature`)."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return "numeric"
    return "categorical"


def profile_feature(name: str, series: pd.Series) -> FeatureProfile:
    """The profile of one column (see :class:`FeatureProfile`)."""
    import pandas as pd

    if feature_kind(series) == "categorical":
        return _categorical_profile(name, series)
    values, invalid = numeric_values(series)
    profile = _numeric_profile(name, values, invalid)
    integers = pd.api.types.is_integer_dtype(series.dtype) or (
        pd.api.types.is_object_dtype(series.dtype) and pd.api.types.infer_dtype(series, skipna=True) == "integer"
    )
    if integers and profile.n_unique <= INTEGER_CATEGORIES:
        return _categorical_profile(name, series)
    return profile


def build_profile(data: Any, predictions: Any = None, *, source: str = "") -> Profile:
    """The reference profile of ``data`` (a DataFrame, a 1-D or 2-D numpy array, a list of
    rows or a dict of columns; an array's columns are named ``"0".."n-1"``) and of the
    model's ``predictions`` on it (one value a row, any number of rows), if given.

    Raises :class:`UsageError` (one line) for data that is not a table, has no rows or
    no columns, or predictions with more than one column.
    """
    frame = as_frame(data, "the reference data")
    if frame.shape[1] == 0:
        raise UsageError("the reference data has no columns: give the features the model was trained on")
    if frame.shape[0] == 0:
        raise UsageError("the reference data has no rows: give the rows the model was trained on (such as X_train)")
    features = [profile_feature(name, frame[name]) for name in frame.columns]
    prediction = None
    if predictions is not None:
        series = as_series(predictions, "prediction")
        if len(series):
            prediction = profile_feature("prediction", series)
    return Profile(features=features, prediction=prediction, rows=int(frame.shape[0]), source=source)


def finite_or_none(value: float | None) -> float | None:
    """``value`` when it is a finite number, else ``None`` (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None
