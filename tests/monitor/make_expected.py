#!/usr/bin/env python3
"""Writes the drift fixtures tests/monitor_stats.rs compares mlcd with.

Seeded data (numpy's default_rng(20261129)) is written as CSV, and the expected
numbers are computed with scipy (ks_2samp, wasserstein_distance, chisquare,
distance.jensenshannon, norm) the way Evidently applies them: its `auto`
choice (get_default_stattest), its binning (get_binned_data), its zero filling
before PSI, its chi-squared expectation scaling and its two-proportion z-test
are restated below from Evidently's source (evidently/legacy/calculations/
stattests/*.py), because Evidently itself is not installed here (it pulls
pandas, plotly and more; the test bed keeps it out of CI).

Run from the repository root (needs numpy and scipy: scripts/testbed up pydeps):
    python3 tests/monitor/make_expected.py          # rewrite the fixtures
    python3 tests/monitor/make_expected.py --check  # exit 1 if they differ
"""

import argparse
import io
import json
import math
import os
import sys

import numpy as np
from scipy import stats
from scipy.spatial import distance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "monitor", "fixtures")
SEED = 20261129


# ---- Evidently's tests, restated with numpy/scipy -------------------------

def uniq(ref, cur):
    return sorted(set(ref.tolist()) | set(cur.tolist()))


def counts(values, keys):
    vals, cnt = np.unique(values, return_counts=True)
    d = dict(zip(vals.tolist(), cnt.tolist()))
    return np.array([d.get(k, 0) for k in keys], dtype=float)


def binned(ref, cur, numeric, n, fill):
    if numeric and len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=n)
        r = np.histogram(ref, bins)[0] / len(ref)
        c = np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = uniq(ref, cur)
        r = counts(ref, keys) / len(ref)
        c = counts(cur, keys) / len(cur)
    if fill:
        for p in (r, c):
            m = p[p != 0].min()
            np.place(p, p == 0, m / 10**6 if m <= 0.0001 else 0.0001)
    return r, c


def ks(ref, cur, numeric):
    return float(stats.ks_2samp(ref, cur).pvalue)


def wasserstein(ref, cur, numeric):
    norm = max(np.std(ref), 0.001)
    return float(stats.wasserstein_distance(ref, cur) / norm)


def psi(ref, cur, numeric):
    r, c = binned(ref, cur, numeric, 10, True)
    return float(np.sum((r - c) * np.log(r / c)))


def jensenshannon(ref, cur, numeric):
    r, c = binned(ref, cur, numeric, 30, False)
    return float(distance.jensenshannon(r, c))


def linf(ref, cur, numeric):
    r, c = binned(ref, cur, numeric, 10, False)
    return float(np.max(np.abs(r - c)))


def chisquare(ref, cur, numeric):
    keys = uniq(ref, cur)
    k_norm = len(cur) / len(ref)
    f_exp = counts(ref, keys) * k_norm
    f_obs = counts(cur, keys)
    return float(stats.chisquare(f_obs, f_exp)[1])


def z(ref, cur, numeric):
    keys = uniq(ref, cur)
    key = keys[0]
    r = (ref != key).astype(float)
    c = (cur != key).astype(float)
    n1, n2 = len(r), len(c)
    p1, p2 = r.sum() / n1, c.sum() / n2
    p = (p1 * n1 + p2 * n2) / (n1 + n2)
    zs = (p1 - p2) / np.sqrt(p * (1 - p) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(abs(zs))))


METHODS = {
    "ks": (ks, "p"),
    "wasserstein": (wasserstein, "d"),
    "psi": (psi, "d"),
    "jensenshannon": (jensenshannon, "d"),
    "linf": (linf, "d"),
    "chisquare": (chisquare, "p"),
    "z": (z, "p"),
}


def auto(ref, cur, numeric):
    n_values = len(uniq(ref, cur))
    if len(ref) <= 1000:
        if numeric:
            return "ks" if n_values > 5 else "chisquare" if n_values > 2 else "z"
        return "chisquare" if n_values > 2 else "z"
    if numeric:
        return "wasserstein" if n_values > 5 else "jensenshannon"
    return "jensenshannon"


def drifted(method, score, threshold):
    return score < threshold if METHODS[method][1] == "p" else score >= threshold


# ---- data ------------------------------------------------------------------

def dataset(rng, n_ref, n_cur):
    """Columns: (values ref, values cur, numeric?)."""
    cols = {}
    cols["age"] = (rng.normal(40, 10, n_ref), rng.normal(44, 10, n_cur), True)
    cols["income"] = (rng.lognormal(10, 0.5, n_ref), rng.lognormal(10, 0.5, n_cur), True)
    cols["score"] = (rng.integers(0, 10, n_ref).astype(float), rng.integers(0, 10, n_cur).astype(float), True)
    cols["calls"] = (
        rng.choice([0.0, 1.0, 2.0, 3.0], n_ref, p=[0.4, 0.3, 0.2, 0.1]),
        rng.choice([0.0, 1.0, 2.0, 3.0], n_cur, p=[0.3, 0.3, 0.2, 0.2]),
        True,
    )
    cols["plan"] = (
        rng.choice(["basic", "plus", "pro", "team"], n_ref, p=[0.4, 0.3, 0.2, 0.1]),
        rng.choice(["basic", "plus", "pro", "team"], n_cur, p=[0.25, 0.3, 0.25, 0.2]),
        False,
    )
    cols["region"] = (
        rng.choice(["north", "south", "east", "west"], n_ref),
        rng.choice(["north", "south", "east", "west"], n_cur),
        False,
    )
    cols["paid"] = (
        rng.choice(["yes", "no"], n_ref, p=[0.7, 0.3]),
        rng.choice(["yes", "no"], n_cur, p=[0.6, 0.4]),
        False,
    )
    out = {}
    for name, (r, c, numeric) in cols.items():
        if numeric:
            r, c = np.round(r, 4), np.round(c, 4)
        out[name] = (r, c, numeric)
    return out


def csv_text(cols, side):
    names = list(cols)
    buf = io.StringIO()
    buf.write(",".join(names) + "\n")
    n = len(cols[names[0]][side])
    for i in range(n):
        row = []
        for name in names:
            v = cols[name][side][i]
            row.append(repr(float(v)) if cols[name][2] else str(v))
        buf.write(",".join(row) + "\n")
    return buf.getvalue()


def expected(cols):
    out = {}
    for name, (r, c, numeric) in cols.items():
        methods = {}
        for m, (fn, _) in METHODS.items():
            if m in ("ks", "wasserstein") and not numeric:
                continue
            if m == "z" and len(uniq(r, c)) != 2:
                continue
            methods[m] = fn(r, c, numeric)
        a = auto(r, c, numeric)
        t = 0.05 if METHODS[a][1] == "p" else 0.1
        out[name] = {
            "type": "numeric" if numeric else "categorical",
            "auto": a,
            "auto_score": methods[a],
            "auto_drifted": bool(drifted(a, methods[a], t)),
            "methods": methods,
        }
    return out


def lattice(n, mult, shift):
    # The same deterministic values the Rust test builds (no data file needed).
    return [((i * mult) % 10007) / 10007.0 + shift for i in range(n)]


def ks_cases():
    cases = []
    for n1, n2, shift in [(37, 53, 0.1), (200, 200, 0.05), (1000, 700, 0.03), (12000, 11000, 0.02), (15000, 15000, 0.0)]:
        a, b = lattice(n1, 7919, 0.0), lattice(n2, 104729, shift)
        r = stats.ks_2samp(a, b)
        cases.append({"n1": n1, "n2": n2, "shift": shift, "d": float(r.statistic), "p": float(r.pvalue)})
    return cases


def build():
    rng = np.random.default_rng(SEED)
    files = {}
    sets = {}
    for label, n_ref, n_cur in [("small", 500, 400), ("large", 2000, 1500)]:
        cols = dataset(rng, n_ref, n_cur)
        files[f"{label}-reference.csv"] = csv_text(cols, 0)
        files[f"{label}-current.csv"] = csv_text(cols, 1)
        sets[label] = {"reference_rows": n_ref, "current_rows": n_cur, "columns": expected(cols)}
    meta = {
        "generator": "tests/monitor/make_expected.py",
        "seed": SEED,
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "sets": sets,
        "ks": ks_cases(),
    }
    files["expected.json"] = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    files = build()
    if args.check:
        stale = [n for n, t in files.items()
                 if not os.path.exists(os.path.join(OUT, n)) or open(os.path.join(OUT, n)).read() != t]
        if stale:
            print("stale: " + ", ".join(stale), file=sys.stderr)
            return 1
        print("fixtures are current", file=sys.stderr)
        return 0
    os.makedirs(OUT, exist_ok=True)
    for n, t in files.items():
        with open(os.path.join(OUT, n), "w") as f:
            f.write(t)
        print(f"wrote tests/monitor/fixtures/{n} ({len(t)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
