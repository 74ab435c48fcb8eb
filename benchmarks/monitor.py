"""Monitor figures (issue 17), against Evidently 0.7's DataDriftPreset on the same data in
the same run:

- a 100,000-row x 20-feature window checked against a stored profile of 100,000 reference
  rows (built beforehand and round-tripped through JSON, as the registry keeps it) by
  ``compare()``, and by Evidently's DataDriftPreset on the reference rows themselves;
  medians over repeats;
- parity: the largest difference between our statistic and Evidently's for the same
  method on the raw data (our raw twins), and the error of the profile-only statistics
  (the Wasserstein distance from the quantile sketch; the rest are exact), both at the
  large reference (Wasserstein, Jensen-Shannon) and at a 1,000-row one (KS, chi-squared).

18 numeric features of several shapes (two shifted by half a standard deviation) and 2
categorical ones (one with a new category), so that the window has drift to find.

Evidently runs in its own interpreter (``.venv/evidently``, made by ``make install``; or
``MLOPS_NB_EVIDENTLY_PYTHON``): it does not import with the project's pandas 3. Its time is
measured inside that process, around the report alone, as ours is around ``compare()``.
Without that interpreter this prints our own figures and says so in one line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_nb.monitoring import drift
from mlops_nb.monitoring.profile import Profile, build_profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from evidently_side import EvidentlyMissing, run_evidently  # shared with tests/test_drift.py

ROWS, NUMBERS = 100_000, 18
EVIDENTLY_REPEATS = 3


def raw_twin(method: str, kind: str, reference: pd.Series, current: pd.Series) -> float:
    """Our raw-array twin of Evidently's ``method`` on the two columns."""
    if method in ("jensenshannon", "psi"):
        return getattr(drift, method)(reference, current, kind)
    twins = {
        "ks": drift.ks_pvalue,
        "chi2": drift.chi2_pvalue,
        "z": drift.z_pvalue,
        "wasserstein": drift.wasserstein_norm,
    }
    return twins[method](reference, current)


def frame(n: int, seed: int, *, drifted: bool = False) -> pd.DataFrame:
    """``n`` rows: normal, lognormal, exponential, uniform and integer features, and two
    categories; ``drifted`` shifts x3 and x11 and gives c1 a new category."""
    rng = np.random.default_rng(seed)
    shapes = [
        lambda s: rng.normal(s, 1, n),
        lambda s: rng.lognormal(s, 0.8, n),
        lambda s: rng.exponential(1 + s, n),
        lambda s: rng.uniform(s, 1 + s, n),
        lambda s: rng.integers(0, 200, n).astype(float) + 60 * s,
    ]
    data: dict[str, Any] = {}
    for i in range(NUMBERS):
        shift = 0.5 if drifted and i in (3, 11) else 0.0
        data[f"x{i}"] = shapes[i % len(shapes)](shift)
    letters = np.array(["a", "b", "c", "d", "e", "f"])
    data["c0"] = rng.choice(letters[:4], n, p=[0.4, 0.3, 0.2, 0.1])
    c1 = rng.choice(letters[:4], n, p=[0.25, 0.25, 0.25, 0.25])
    data["c1"] = np.where(rng.random(n) < 0.1, "f", c1) if drifted else c1
    return pd.DataFrame(data)


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls (after one warm-up call) and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def parity(reference: pd.DataFrame, current: pd.DataFrame, theirs: dict[str, list[Any]]) -> dict:
    """Per method: the largest |raw twin - Evidently| and |compare() from the profile -
    Evidently|, and whether both picked the same method and verdict for every column."""
    ours = drift.compare(Profile.from_json(build_profile(reference).to_json()), current)
    raw: dict[str, float] = {}
    profiled: dict[str, float] = {}
    same_method = same_verdict = True
    for f in ours.features:
        method, value = theirs[f.feature]
        same_method &= f.method == method
        same_verdict &= f.drifted == drift.is_drift(method, value, drift.DEFAULT_THRESHOLDS[method])
        twin = raw_twin(method, f.kind, reference[f.feature], current[f.feature])
        raw[method] = max(raw.get(method, 0.0), abs(twin - value))
        profiled[method] = max(profiled.get(method, 0.0), abs(f.score - value))
    return {"raw": raw, "profile": profiled, "same_method": same_method, "same_verdict": same_verdict}


def main() -> dict:
    reference, current = frame(ROWS, 0), frame(ROWS, 1, drifted=True)
    build_s, profile = timed(lambda: build_profile(reference, source="bench"), 5)
    text = profile.to_json()
    stored = Profile.from_json(text)  # what the monitor loads from the registry
    ours_s, result = timed(lambda: drift.compare(stored, current), 7)
    out: dict[str, Any] = {
        "rows": ROWS,
        "features": reference.shape[1],
        "build_profile_s": build_s,
        "profile_json_kb": len(text) / 1024,
        "compare_s": ours_s,
        "drifted": result.drifted,
        "machine": {"python": sys.version.split()[0]},
    }
    small_ref, small_cur = frame(1000, 2), frame(1000, 3, drifted=True)
    datasets = {"ref": reference, "cur": current, "small_ref": small_ref, "small_cur": small_cur}
    jobs = [
        {"id": "large", "op": "preset", "reference": "ref", "current": "cur", "repeats": EVIDENTLY_REPEATS},
        {"id": "small", "op": "preset", "reference": "small_ref", "current": "small_cur"},
    ]
    try:
        answer = run_evidently(datasets, jobs, timeout=1800)
    except EvidentlyMissing as exc:
        out["evidently"] = f"not available: {exc}"
        return out
    large, small = answer["results"]["large"], answer["results"]["small"]
    out["evidently"] = answer["evidently"]
    out["evidently_s"] = large["seconds"]
    out["evidently_times_s"] = large["times"]
    out["ratio"] = large["seconds"] / ours_s
    out["large"] = parity(reference, current, large["values"])
    out["small"] = parity(small_ref, small_cur, small["values"])
    return out


def _worst(values: dict[str, float]) -> str:
    return ", ".join(f"{m} {v:.1e}" for m, v in sorted(values.items()))


def table(r: dict) -> None:
    rows, n = f"{r['rows']:,}", r["features"]
    version = r["evidently"] if "evidently_s" in r else "0.7"
    print(f"| figure | mlops-nb | Evidently {version} DataDriftPreset (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    if "evidently_s" in r:
        print(
            f"| a {rows}-row x {n}-feature window against a stored profile of {rows} rows "
            f"| {r['compare_s']:.3f} s | {r['evidently_s']:.2f} s | {r['ratio']:.0f}x faster | <= 1 s, >= 10x |"
        )
    else:
        print(
            f"| a {rows}-row x {n}-feature window against a stored profile of {rows} rows | {r['compare_s']:.3f} s | | | <= 1 s |"
        )
    print(
        f"| the profile of {rows} x {n} reference rows: build / JSON | {r['build_profile_s']:.2f} s / {r['profile_json_kb']:.0f} KB | | | |"
    )
    for size, key in (("100,000-row", "large"), ("1,000-row", "small")):
        if key in r:
            p = r[key]
            print(
                f"| {size} reference: largest difference from Evidently, same method on the raw data | {_worst(p['raw'])} | | | <= 1e-6 |"
            )
            print(
                f"| {size} reference: from the profile only (method and verdict as Evidently's for every column: "
                f"{'yes' if p['same_method'] and p['same_verdict'] else 'NO'}) "
                f"| {_worst(p['profile'])} | | | exact; Wasserstein <= 1e-3 |"
            )
    print(f"\ndrifted in the window: {', '.join(r['drifted'])}")
    if "evidently_s" not in r:
        print(f"Evidently {r.get('evidently')}: our own figures only")


if __name__ == "__main__":
    figures = main()
    table(figures)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "monitor.json").write_text(json.dumps(figures, indent=2))
