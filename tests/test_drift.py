"""Drift statistics against Evidently 0.7 on the same data, and the profile-only compare().

Evidently is the reference: its own stattest functions for the raw twins, its
DataDriftPreset report for compare(). It runs in its own interpreter (evidently_side.py
says why), once for the whole module: every number it gives is asked for in one request.
Synthetic data with known shifts checks that drift is found exactly where it was put, and
that data from the same distribution raises no alarm at the default thresholds.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from evidently_side import EvidentlyMissing, run_evidently

from mlops_nb.exceptions import NotFoundError, UsageError
from mlops_nb.monitoring import drift
from mlops_nb.monitoring.drift import compare, default_method
from mlops_nb.monitoring.profile import SMALL_REFERENCE, Profile, build_profile

SHIFTED = ("x3", "x7")


def stored(profile: Profile) -> Profile:
    """The profile as the registry keeps it: through JSON."""
    return Profile.from_json(profile.to_json())


def features(n: int, seed: int, *, shift: bool = False, new_category: bool = False) -> pd.DataFrame:
    """18 numbers and 2 categories; ``shift`` moves x3 and x7 by half a standard
    deviation, ``new_category`` gives c1 a category "e" in a fifth of the rows."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {f"x{i}": rng.normal(i, 1 + i / 10, n) for i in range(18)}
    if shift:
        for name in SHIFTED:
            data[name] = data[name] + 0.5 * (1 + int(name[1:]) / 10)
    letters, shares = ["a", "b", "c", "d"], [0.4, 0.3, 0.2, 0.1]
    data["c0"] = rng.choice(letters, n, p=shares)
    c1 = rng.choice(letters, n, p=shares)
    data["c1"] = np.where(rng.random(n) < 0.2, "e", c1) if new_category else c1
    return pd.DataFrame(data)


def mixed(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """One column of each kind Evidently tells apart, with missing numbers."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "num": x,
            "ints4": rng.integers(0, 4, n),  # integers with few values: categories
            "ints30": rng.integers(0, 30, n),
            "cat": rng.choice(list("abc"), n, p=[0.5, 0.3, 0.2] if shift else None),
            "bin": rng.choice(["y", "n"], n),
            "few": rng.choice([0.5, 1.5, 2.5], n),  # a float with 3 values: chi2 / JS on values
            "flag": rng.integers(0, 2, n).astype(float),
            "bool": rng.random(n) < 0.3,
        }
    )


@pytest.fixture(scope="module")
def large() -> tuple[Profile, pd.DataFrame]:
    """A stored profile of 20,000 reference rows, and those rows."""
    reference = features(20_000, 0)
    return stored(build_profile(reference, source="test")), reference


# ---------------------------------------------------------------- raw twins


def _samples() -> dict[str, pd.Series]:
    rng = np.random.default_rng(7)
    return {
        "a": pd.Series(rng.normal(0, 1, 800)),
        "b": pd.Series(rng.normal(0.2, 1.1, 600)),
        "ints": pd.Series(rng.integers(0, 15, 3000).astype(float)),
        "ints2": pd.Series(rng.integers(0, 16, 2000).astype(float)),
        "cat": pd.Series(rng.choice(list("abcd"), 900)),
        "cat2": pd.Series(rng.choice(list("abcd"), 700, p=[0.3, 0.3, 0.2, 0.2])),
        "cat3": pd.Series(rng.choice(list("abcde"), 700)),
        "yes": pd.Series(rng.choice(["y", "n"], 900, p=[0.3, 0.7])),
        "yes2": pd.Series(rng.choice(["y", "n"], 500, p=[0.35, 0.65])),
        "bits": pd.Series(rng.integers(0, 2, 400).astype(float)),
        "bits2": pd.Series(rng.integers(0, 2, 300).astype(float)),
    }


def _ours(method: str, kind: str, reference: pd.Series, current: pd.Series) -> float:
    if method in ("jensenshannon", "psi"):
        return getattr(drift, method)(reference, current, kind)
    return {
        "ks": drift.ks_pvalue,
        "chi2": drift.chi2_pvalue,
        "z": drift.z_pvalue,
        "wasserstein": drift.wasserstein_norm,
    }[method](reference, current)


#: (id, method, kind, reference sample, current sample)
TWINS = [
    ("ks", "ks", "numeric", "a", "b"),
    ("chi2", "chi2", "categorical", "cat", "cat2"),
    ("chi2 new category", "chi2", "categorical", "cat", "cat3"),
    ("z", "z", "categorical", "yes", "yes2"),
    ("z numbers", "z", "numeric", "bits", "bits2"),
    ("z same", "z", "categorical", "yes", "yes"),
    ("wasserstein", "wasserstein", "numeric", "a", "b"),
    ("jensenshannon numeric", "jensenshannon", "numeric", "a", "b"),
    ("jensenshannon few values", "jensenshannon", "numeric", "ints", "ints2"),
    ("jensenshannon categorical", "jensenshannon", "categorical", "cat", "cat3"),
    ("psi numeric", "psi", "numeric", "a", "b"),
    ("psi few values", "psi", "numeric", "ints", "ints2"),
    ("psi categorical", "psi", "categorical", "cat", "cat3"),
]
#: (kind, reference rows, distinct values): Evidently's choice of method.
DEFAULTS = [
    ("numeric", 500, 50),
    ("numeric", 500, 4),
    ("numeric", 500, 2),
    ("categorical", 500, 4),
    ("categorical", 500, 2),
    ("numeric", 3000, 50),
    ("numeric", 3000, 5),
    ("categorical", 3000, 3),
]
#: Reports: id -> (reference, current).
REPORTS = {
    "small": (lambda: mixed(800, 0), lambda: mixed(600, 1, shift=0.15)),
    "large": (lambda: mixed(5000, 0), lambda: mixed(3000, 1, shift=0.3)),
}


def _default_samples(kind: str, n_reference: int, values: int) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.integers(0, values, n_reference).astype(float))
    cur = pd.Series(rng.integers(0, values, 300).astype(float))
    return (ref.astype(str), cur.astype(str)) if kind == "categorical" else (ref, cur)


@pytest.fixture(scope="module")
def evidently() -> dict:
    """Every number the module compares with, from one run of Evidently's interpreter."""
    datasets = {name: series.to_frame("v") for name, series in _samples().items()}
    jobs: list[dict] = [
        {"id": f"twin:{i}", "op": "stattest", "method": m, "kind": k, "reference": [r, "v"], "current": [c, "v"]}
        for i, m, k, r, c in TWINS
    ]
    for i, (kind, n, values) in enumerate(DEFAULTS):
        ref, cur = _default_samples(kind, n, values)
        datasets[f"dref{i}"], datasets[f"dcur{i}"] = ref.to_frame("v"), cur.to_frame("v")
        jobs.append(
            {
                "id": f"default:{i}",
                "op": "default",
                "kind": kind,
                "reference": [f"dref{i}", "v"],
                "current": [f"dcur{i}", "v"],
            }
        )
    for name, (reference, current) in REPORTS.items():
        datasets[f"{name}_ref"], datasets[f"{name}_cur"] = reference(), current()
        jobs.append({"id": f"preset:{name}", "op": "preset", "reference": f"{name}_ref", "current": f"{name}_cur"})
    try:
        answer = run_evidently(datasets, jobs)
    except EvidentlyMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    assert answer["evidently"].startswith("0.7."), answer["evidently"]
    return answer["results"]


@pytest.mark.parametrize(("name", "method", "kind", "ref", "cur"), TWINS, ids=[t[0] for t in TWINS])
def test_raw_twins_equal_evidentlys_functions(evidently, name, method, kind, ref, cur):
    data = _samples()
    expected = evidently[f"twin:{name}"]
    assert _ours(method, kind, data[ref], data[cur]) == pytest.approx(expected, abs=1e-6, rel=1e-9), name


def test_raw_twins_drop_missing_and_infinite_values_as_evidently_does(evidently):
    data = _samples()
    a, b = data["a"], data["b"]
    dirty = pd.concat([a, pd.Series([np.nan, np.inf, -np.inf])], ignore_index=True)
    assert drift.ks_pvalue(dirty, b.tolist()) == pytest.approx(evidently["twin:ks"], abs=1e-12)
    assert drift.wasserstein_norm(dirty.to_numpy(), b) == pytest.approx(evidently["twin:wasserstein"], abs=1e-12)


@pytest.mark.parametrize(("i", "kind", "n_reference", "values"), [(i, *d) for i, d in enumerate(DEFAULTS)])
def test_default_method_is_evidentlys_choice(evidently, i, kind, n_reference, values):
    ref, cur = _default_samples(kind, n_reference, values)
    expected = {"chisquare": "chi2"}.get(evidently[f"default:{i}"], evidently[f"default:{i}"])
    assert default_method(kind, n_reference, int(pd.concat([ref, cur]).nunique())) == expected


# ---------------------------------------------------------------- compare() against Evidently's report


def test_compare_equals_evidently_report_on_a_small_reference(evidently):
    """Up to 1,000 reference rows every statistic from the profile is exact: KS from the
    stored values, chi-squared and z from frequencies; kinds and methods are Evidently's."""
    reference, current = (make() for make in REPORTS["small"])
    theirs = evidently["preset:small"]["values"]
    result = compare(stored(build_profile(reference)), current)
    assert {f.feature for f in result.features} == set(theirs)
    for f in result.features:
        method, value = theirs[f.feature]
        assert (f.feature, f.method) == (f.feature, method)
        assert f.score == pytest.approx(value, abs=1e-6, rel=1e-9), f.feature
        assert f.drifted == drift.is_drift(method, value, drift.DEFAULT_THRESHOLDS[method])
    assert {f.method for f in result.features} == {"ks", "chi2", "z"}


def test_compare_equals_evidently_report_on_a_large_reference(evidently):
    """Above 1,000 rows: Jensen-Shannon exact from frequencies, the normalised Wasserstein
    distance from the quantile sketch within 1e-3."""
    reference, current = (make() for make in REPORTS["large"])
    theirs = evidently["preset:large"]["values"]
    result = compare(stored(build_profile(reference)), current)
    for f in result.features:
        method, value = theirs[f.feature]
        assert f.method == method, f.feature
        tolerance = 1e-3 if method == "wasserstein" else 1e-6
        assert f.score == pytest.approx(value, abs=tolerance), f.feature
    assert {f.method for f in result.features} == {"wasserstein", "jensenshannon"}
    assert result.feature("num").drifted and result.feature("cat").drifted


@pytest.mark.parametrize("shape", ["normal", "lognormal", "exponential", "integers", "half zeros"])
def test_wasserstein_from_the_profile_is_within_1e3_of_the_exact_value(shape):
    rng = np.random.default_rng(11)
    n = 100_000
    make = {
        "normal": lambda s: rng.normal(s, 1, n),
        "lognormal": lambda s: rng.lognormal(s, 1, n),
        "exponential": lambda s: rng.exponential(1 + s, n),
        "integers": lambda s: rng.integers(0, 50 + int(10 * s), n).astype(float),
        "half zeros": lambda s: np.where(rng.random(n) < 0.5, 0.0, rng.normal(s, 1, n)),
    }[shape]
    reference = make(0.0)
    profile = stored(build_profile({"f": reference}))
    for shift in (0.0, 0.05, 0.3):
        current = make(shift)[: n // 2]
        exact = drift.wasserstein_norm(reference, current)
        assert compare(profile, {"f": current}).features[0].score == pytest.approx(exact, abs=1e-3), shift


def test_wasserstein_is_exact_where_the_profile_holds_every_value():
    rng = np.random.default_rng(5)
    reference, current = rng.normal(0, 1, SMALL_REFERENCE), rng.normal(0.2, 1, 5000)
    profile = stored(build_profile({"f": reference}))
    xs, levels = profile.features[0].cdf_knots()
    distance = drift.wasserstein_from_sketch(xs, levels, np.sort(current)) / profile.features[0].std
    assert distance == pytest.approx(drift.wasserstein_norm(reference, current), abs=1e-9)


# ---------------------------------------------------------------- known shifts, no false alarms


def test_large_reference_finds_the_shift_and_the_new_category_exactly_there(large):
    profile, _ = large
    result = compare(profile, features(5000, 1, shift=True, new_category=True))
    assert result.drifted == [*SHIFTED, "c1"]
    assert result.share == pytest.approx(3 / 20)
    assert {f.method for f in result.features if f.kind == "numeric"} == {"wasserstein"}
    assert result.feature("c1").method == "jensenshannon"
    assert set(result.feature("c1").unseen) == {"e"}
    assert 800 < result.feature("c1").unseen["e"] < 1200
    assert all(not f.unseen for f in result.features if f.feature != "c1")


def test_large_reference_raises_no_alarm_on_the_same_distribution(large):
    profile, _ = large
    for seed in range(1, 6):
        result = compare(profile, features(5000, seed))
        assert result.drifted == [], (seed, [(f.feature, f.score) for f in result.features if f.drifted])
        assert max(f.psi or 0.0 for f in result.features) < 0.1


def test_small_reference_finds_the_shift_and_the_new_category():
    """KS and chi-squared at p < 0.05: each unshifted feature is flagged in about one
    window in twenty (more often when the 1,000-row reference itself happens to sit off
    the truth, as this one's c0 does), so the shifted ones must be flagged in every window
    and, in a window where chance flags nothing else (seed 7), they alone."""
    profile = stored(build_profile(features(SMALL_REFERENCE, 0)))
    for seed in (1, 2, 3, 7):
        result = compare(profile, features(1000, seed, shift=True, new_category=True))
        assert {*SHIFTED, "c1"} <= set(result.drifted), seed
        assert result.feature("x3").method == "ks" and result.feature("c1").method == "chi2"
        assert result.feature("x3").score < 1e-6
        assert result.feature("c1").score == 0.0  # a category the reference never had
        if seed == 7:
            assert result.drifted == [*SHIFTED, "c1"]


def test_small_reference_never_calls_the_dataset_drifted_on_the_same_distribution():
    profile = stored(build_profile(features(600, 0)))
    flagged = 0
    for seed in range(1, 11):
        result = compare(profile, features(500, seed))
        assert result.share < 0.5, seed
        flagged += len(result.drifted)
    assert flagged <= 0.15 * 10 * 20  # about 5 % of the features at p < 0.05


def test_predictions_drift_is_reported_apart_from_the_features():
    rng = np.random.default_rng(2)
    reference = features(3000, 0)
    profile = stored(build_profile(reference, predictions=rng.choice(["cat", "dog"], 3000, p=[0.5, 0.5])))
    assert profile.prediction is not None and profile.prediction.kind == "categorical"
    window = features(2000, 1)
    same = compare(profile, window, rng.choice(["cat", "dog"], 2000).tolist())
    moved = compare(profile, window, rng.choice(["cat", "dog"], 2000, p=[0.9, 0.1]))
    assert same.prediction is not None and not same.prediction.drifted
    assert moved.prediction is not None and moved.prediction.drifted
    assert moved.prediction.method == "jensenshannon" and moved.drifted == []
    assert compare(profile, window).prediction is None


# ---------------------------------------------------------------- data quality and display


def test_data_quality_missing_out_of_range_unseen_and_invalid():
    reference = pd.DataFrame(
        {
            "n": np.r_[np.linspace(0, 10, 2000), [np.nan] * 500],
            "c": ["a", "b"] * 1000 + [None] * 500,
        }
    )
    profile = stored(build_profile(reference))
    window = pd.DataFrame(
        {
            "n": [-1.0, 11, 12, 5, np.nan, np.inf, "seven", 3, 4, 5],
            "c": ["a", "b", "z", "z", "y", None, None, "a", "a", "b"],
        }
    )
    result = compare(profile, window)
    n, c = result.feature("n"), result.feature("c")
    assert n.missing_reference == pytest.approx(0.2) and c.missing_reference == pytest.approx(0.2)
    assert n.missing_current == pytest.approx(0.3) and n.invalid == 1 and n.rows == 7
    assert n.out_of_range == 3
    assert c.missing_current == pytest.approx(0.2) and c.rows == 8
    assert c.unseen == {"z": 2, "y": 1}
    assert n.reference_hist is not None and n.current_hist is not None
    assert n.reference_hist["edges"] == n.current_hist["edges"] and len(n.reference_hist["edges"]) == 21
    assert sum(n.reference_hist["counts"]) == 2000 and sum(n.current_hist["counts"]) == 7
    assert n.current_hist["counts"][0] == 1 and n.current_hist["counts"][-1] == 2  # clipped into the outer bins
    assert c.reference_hist == {"categories": ["a", "b", "z", "y"], "counts": [1000, 1000, 0, 0]}
    assert c.current_hist == {"categories": ["a", "b", "z", "y"], "counts": [3, 2, 2, 1]}


def test_profile_psi_uses_ten_quantile_bins_of_the_reference():
    rng = np.random.default_rng(4)
    reference, current = rng.normal(0, 1, 50_000), rng.normal(0.3, 1, 20_000)
    profile = stored(build_profile({"f": reference}))
    f = profile.features[0]
    assert f.psi_edges is not None and len(f.psi_edges) == 9 and f.psi_counts == [5000] * 10
    edges = np.concatenate([[-np.inf], f.psi_edges, [np.inf]])
    ref_share = np.histogram(reference, edges)[0] / reference.size
    cur_share = np.histogram(current, edges)[0] / current.size
    expected = float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share)))
    assert compare(profile, {"f": current}).features[0].psi == pytest.approx(expected, rel=1e-9)
    # An empty bin gets Evidently's fill (0.0001) instead of an infinite PSI.
    assert np.isfinite(compare(profile, {"f": np.full(100, 5.0)}).features[0].psi)


def test_integers_and_booleans_keep_their_categories_across_types():
    """A JSON window may carry an integer column as floats or a boolean as 1/0."""
    reference = pd.DataFrame({"k": np.tile([1, 2, 3], 400), "b": np.tile([True, False], 600)})
    profile = stored(build_profile(reference))
    assert [f.kind for f in profile.features] == ["categorical", "categorical"]
    result = compare(profile, {"k": [1.0, 2.0, 3.0, 4.0] * 25, "b": [1, 0] * 50})
    assert result.feature("k").unseen == {"4": 25}
    assert result.feature("b").unseen == {} and result.feature("b").current_hist["counts"] == [50, 50]


# ---------------------------------------------------------------- inputs, profiles, errors


def test_profile_round_trips_through_json():
    rng = np.random.default_rng(9)
    data = mixed(1500, 0)
    data["wide"] = rng.normal(size=1500) * 1e300
    profile = build_profile(data, predictions=rng.normal(size=200), source="X_train")
    text = profile.to_json()
    assert Profile.from_json(text) == profile
    assert Profile.from_dict(json.loads(text)) == profile
    assert profile.columns == list(data.columns)
    kinds = {f.name: f.kind for f in profile.features}
    assert kinds == {**dict.fromkeys(data.columns, "numeric"), "ints4": "categorical", "cat": "categorical"} | {
        "bin": "categorical",
        "bool": "categorical",
    }
    assert list(profile.feature("few").frequencies or {}) == ["0.5", "1.5", "2.5"]
    assert profile.rows == 1500 and profile.source == "X_train" and profile.created.endswith("+00:00")
    window = mixed(700, 1)
    assert compare(Profile.from_json(text), window).to_dict() == compare(profile, window).to_dict()
    json.dumps(compare(profile, window).to_dict(), allow_nan=False)  # JSON-ready, no NaN


def test_arrays_lists_and_dicts_name_columns_alike():
    rng = np.random.default_rng(1)
    array = rng.normal(size=(2000, 3))
    profile = build_profile(array)
    assert profile.columns == ["0", "1", "2"]
    assert build_profile(array.tolist()).to_dict()["features"] == profile.to_dict()["features"]
    assert build_profile({"0": array[:, 0]}).features[0] == profile.features[0]
    assert build_profile(array[:, 0]).columns == ["0"]
    assert compare(profile, rng.normal(size=(2000, 3)).tolist()).drifted == []


@pytest.mark.parametrize(
    ("data", "predictions", "words"),
    [
        (np.zeros((3, 2, 2)), None, "3-D array"),
        ("a,b\n1,2", None, "from a str"),
        ({"a": [1, 2], "b": [1]}, None, "equal length"),
        ([[1, 2], [3]], None, "different lengths"),
        (pd.DataFrame({"a": []}), None, "no rows"),
        (pd.DataFrame(index=range(3)), None, "no columns"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), None, "more than once"),
        ([[1.0], [2.0]], np.zeros((2, 2)), "2 columns"),
    ],
)
def test_bad_input_is_one_clear_line(data, predictions, words):
    with pytest.raises(UsageError) as info:
        build_profile(data, predictions)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_unreadable_profiles_are_one_clear_line():
    for text in ("{not json", '{"rows": 3}', '{"features": [{"name": "x"}]}'):
        with pytest.raises(UsageError) as info:
            Profile.from_json(text)
        assert "profile" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(NotFoundError, match="no feature 'nope'"):
        build_profile({"a": [1.0, 2.0]}).feature("nope")


def test_missing_columns_are_reported_not_raised(large):
    profile, _ = large
    window = features(500, 1).drop(columns=["x1", "c0"]).assign(extra=1.0)
    result = compare(profile, window)
    assert result.missing_columns == ["x1", "c0"]
    assert result.extra_columns == ["extra"]
    assert len(result.features) == 18 and "x1" not in [f.feature for f in result.features]
    assert compare(profile, pd.DataFrame({"other": [1.0, 2.0]})).features == []


def test_an_empty_window_is_a_usage_error_and_an_empty_column_is_no_test(large):
    profile, _ = large
    with pytest.raises(UsageError, match="no rows") as info:
        compare(profile, features(10, 1).iloc[:0])
    assert "\n" not in str(info.value)
    window = features(50, 1)
    window["x2"] = np.nan
    window["c0"] = None
    result = compare(profile, window)
    for name in ("x2", "c0"):
        f = result.feature(name)
        assert (f.method, f.drifted, f.rows, f.missing_current) == ("none", False, 0, 1.0)
        assert f.to_dict()["score"] is None
