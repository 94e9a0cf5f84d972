#!/usr/bin/env python3
"""Writes the Parquet fixtures of tests/monitor_parquet.rs with a real writer (pyarrow).

1. The seeded drift samples make_expected.py wrote as CSV (small-*, large-*),
   written again as Parquet, each with another codec and layout:
     small-reference  SNAPPY   one row group, plan/paid dictionary-encoded, region plain
     small-current    ZSTD     score and calls as int64 (the CSV holds 3.0, 0.0, …)
     large-reference  GZIP     three row groups of at most 700 rows
     large-current    LZ4_RAW  (pyarrow's "lz4"), data pages of at most 4 KB
   mlcd must find the same per-column scores and verdicts in them as in the CSV.
2. types.parquet and types.csv: 300 seeded rows of every type mlcd reads
   (int32, uint64, decimal128(9,2) and (20,4), float32 with NaN, bool, a
   dictionary string, date32, a list column mlcd leaves out), with nulls; the
   CSV holds the same values as the text mlcd reads a Parquet value as.
3. brotli.parquet (a codec mlcd does not read) and truncated.parquet (the
   first half of small-current.parquet): the errors.

Run from the repository root (needs pyarrow, e.g. `pip install pyarrow`;
written with pyarrow 26.0.1):
    python3 tests/monitor/make_parquet.py          # rewrite the fixtures
    python3 tests/monitor/make_parquet.py --check  # exit 1 if a fixture's data differs
(--check compares the tables read back, not the bytes: pyarrow's version is in
the files' metadata.)
"""

import argparse
import decimal
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "monitor", "fixtures")
OUT = os.path.join(FIX, "parquet")
SEED = 20261130

NUMERIC = ["age", "income", "score", "calls"]
TEXT = ["plan", "region", "paid"]


def read_csv(name):
    types = {c: pa.float64() for c in NUMERIC} | {c: pa.string() for c in TEXT}
    return pacsv.read_csv(
        os.path.join(FIX, name), convert_options=pacsv.ConvertOptions(column_types=types)
    )


def drift_samples(out):
    t = read_csv("small-reference.csv")
    pq.write_table(t, f"{out}/small-reference.parquet", compression="snappy",
                   use_dictionary=["plan", "paid"])
    t = read_csv("small-current.csv")
    for c in ("score", "calls"):
        i = t.schema.get_field_index(c)
        t = t.set_column(i, c, t.column(c).cast(pa.int64()))
    pq.write_table(t, f"{out}/small-current.parquet", compression="zstd")
    pq.write_table(read_csv("large-reference.csv"), f"{out}/large-reference.parquet",
                   compression="gzip", row_group_size=700)
    pq.write_table(read_csv("large-current.csv"), f"{out}/large-current.parquet",
                   compression="lz4", data_page_size=4096)


def types_table():
    rng = np.random.default_rng(SEED)
    n = 300
    nulls = lambda p: rng.random(n) < p  # noqa: E731
    i32 = rng.integers(-1000, 1000, n)
    u64 = rng.integers(0, 2**62, n, dtype=np.uint64) + np.uint64(2**63)
    cents = rng.integers(-100000, 100000, n)
    big = rng.integers(-10**12, 10**12, n)
    f32 = rng.normal(0, 3, n).astype(np.float32)
    f32[rng.random(n) < 0.05] = np.nan
    flag = rng.random(n) < 0.3
    color = rng.choice(["red", "green", "blue", "amber"], n, p=[0.4, 0.3, 0.2, 0.1])
    day = rng.integers(19000, 19400, n)
    m = {c: nulls(0.1) for c in ("i32", "dec", "f32", "flag", "color", "day")}

    def col(values, mask, typ):
        return pa.array([None if mk else v for v, mk in zip(values, mask)], type=typ)

    return pa.table({
        "i32": col(i32.tolist(), m["i32"], pa.int32()),
        "u64": pa.array(u64.tolist(), type=pa.uint64()),
        "dec": col([decimal.Decimal(int(c)).scaleb(-2) for c in cents], m["dec"],
                   pa.decimal128(9, 2)),
        "bigdec": pa.array([decimal.Decimal(int(b)).scaleb(-4) for b in big],
                           type=pa.decimal128(20, 4)),
        "f32": col(f32.tolist(), m["f32"], pa.float32()),
        "flag": col(flag.tolist(), m["flag"], pa.bool_()),
        "color": col(color.tolist(), m["color"], pa.string()),
        "day": col(day.tolist(), m["day"], pa.date32()),
        "tags": pa.array([["a", "b"][: k % 3] for k in range(n)], type=pa.list_(pa.string())),
    })


def text(v):
    """The text mlcd reads a Parquet value as (see src/monitor/parquet.rs)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if v != v else repr(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if hasattr(v, "toordinal"):  # a date: days since 1970-01-01
        return str(v.toordinal() - 719163)
    return str(v)


def types_files(out):
    t = types_table()
    pq.write_table(t, f"{out}/types.parquet", compression="snappy")
    names = [c for c in t.column_names if c != "tags"]
    rows = t.select(names).to_pylist()
    with open(f"{out}/types.csv", "w") as f:
        f.write(",".join(names) + "\n")
        for r in rows:
            f.write(",".join(text(r[c]) for c in names) + "\n")


def error_files(out):
    pq.write_table(read_csv("small-current.csv"), f"{out}/brotli.parquet", compression="brotli")
    with open(f"{out}/small-current.parquet", "rb") as f:
        data = f.read()
    with open(f"{out}/truncated.parquet", "wb") as f:
        f.write(data[: len(data) // 2])


def write(out):
    os.makedirs(out, exist_ok=True)
    drift_samples(out)
    types_files(out)
    error_files(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if not args.check:
        write(OUT)
        print(f"wrote {sorted(os.listdir(OUT))}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        write(tmp)
        bad = []
        for name in sorted(os.listdir(tmp)):
            new, old = f"{tmp}/{name}", f"{OUT}/{name}"
            if name == "truncated.parquet" or name.endswith(".csv"):
                same = open(new, "rb").read() == open(old, "rb").read() if name.endswith(".csv") \
                    else os.path.getsize(new) == os.path.getsize(old)
            else:
                a, b = pq.ParquetFile(new), pq.ParquetFile(old)
                same = str(a.read().to_pylist()) == str(b.read().to_pylist()) and [
                    a.metadata.row_group(0).column(0).compression
                ] == [b.metadata.row_group(0).column(0).compression] \
                    and a.metadata.num_row_groups == b.metadata.num_row_groups
            if not same:
                bad.append(name)
        if bad:
            print(f"differ: {bad}")
            sys.exit(1)
        print("fixtures current")


if __name__ == "__main__":
    main()
