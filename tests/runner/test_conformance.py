"""The conformance matrix: every tabular input format × batching × output
format end to end, and files input × every output format.

Each case runs `run_local` on a job folder and checks the merged output's row count,
order and content, and the summary's counts. The expected output is built here with
pandas from the input data, never with parallelrun's own code: plan order is sorted
file order then row order; with partitionKeys, one group per key value in sorted key
order, rows of a group in file order.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import run_local

# -- the input data ------------------------------------------------------------------

# Sorted file order is plan order; ids increase across files in that order.
FILES = (("part-a", 430), ("part-b", 1150), ("part-c", 420))
ROWS = sum(n for _, n in FILES)
COLUMNS = ["id", "group", "x", "text"]
GROUPS = ["delta", "alpha", "charlie", "bravo"]  # sorted: alpha, bravo, charlie, delta
# Values that need csv quoting (a comma, a quote), spaces (AML's txt separator) and unicode;
# no newline inside a value (csv/jsonl are split by byte ranges on line boundaries).
SPECIALS = ["plain", "a,b", "with space", 'say "hi"', 'x, "y" z', "ünïcødé ✓ 東京"]

SCORE_TABULAR = """
def run(df):
    df = df.copy()
    df["y"] = df["x"] * 2
    return df
"""

SCORE_FILES = """
import os

def run(paths):
    out = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            out.append(f"{os.path.basename(p)}:{f.read()}")
    return out
"""

FILE_COUNT = 37
FILES_BATCH = 5


def _frames() -> list[pd.DataFrame]:
    """One DataFrame per input file, in sorted file order."""
    rng = np.random.default_rng(6)
    frames, first = [], 0
    for k, (_, n) in enumerate(FILES):
        ids = np.arange(first, first + n, dtype=np.int64)
        # Groups are scattered (a partition reorders rows); "bravo" is missing from the last file.
        choices = GROUPS if k < len(FILES) - 1 else [g for g in GROUPS if g != "bravo"]
        groups = rng.choice(choices, size=n)
        # Never integral, so every mini-batch's x is read as a float whatever the format.
        x = np.round(rng.normal(0, 100, size=n), 6) + 0.125
        text = [f"{SPECIALS[i % len(SPECIALS)]} #{i}" for i in ids]
        frames.append(pd.DataFrame({"id": ids, "group": groups.astype(object), "x": x, "text": text}))
        first += n
    return frames


def _write_input(root, frames: list[pd.DataFrame]) -> dict:
    folders = {}
    for fmt in ("csv", "jsonl", "parquet"):
        folder = root / fmt
        folder.mkdir()
        for (name, _), df in zip(FILES, frames):
            path = folder / f"{name}.{fmt}"
            if fmt == "csv":
                df.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
            elif fmt == "jsonl":
                with open(path, "w", encoding="utf-8", newline="\n") as f:
                    for record in df.to_dict(orient="records"):
                        f.write(json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()},
                                           ensure_ascii=False) + "\n")
            else:
                # The big file in small row groups (mini-batches align to them), the others in one.
                table = pa.Table.from_pandas(df, preserve_index=False)
                pq.write_table(table, path, row_group_size=100 if name == "part-b" else None)
        folders[fmt] = folder
    return folders


@pytest.fixture(scope="module")
def tabular_input(tmp_path_factory):
    """(folders by input format, the input frames) — written once for the module."""
    frames = _frames()
    return _write_input(tmp_path_factory.mktemp("conformance-input"), frames), frames


def expected_frame(frames: list[pd.DataFrame], partitioned: bool) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True)
    if partitioned:  # sorted key order; a stable sort keeps file order inside a group
        df = df.sort_values("group", kind="stable").reset_index(drop=True)
    df = df.copy()
    df["y"] = df["x"] * 2
    return df


# -- running a case ------------------------------------------------------------------------


def quiet_run(path):
    return run_local(str(path), console=Console(file=io.StringIO()))


INPUTS = ["csv", "jsonl", "parquet"]
BATCHINGS = ["default", "16KB", "rows250", "partitionKeys"]
OUTPUTS = ["csv", "parquet", "jsonl", "txt"]


def _batching_spec(batching: str) -> dict:
    return {"default": {}, "16KB": {"miniBatchSize": "16KB"}, "rows250": {"miniBatchSize": 250},
            "partitionKeys": {"partitionKeys": ["group"]}}[batching]


# A few cases spread over 2 nodes × 2 processes (mini-batches may finish out of order), so shards
# and processes show that they keep plan order; each input, batching and output is among them.
SPREAD = {("csv", "16KB", "txt"), ("jsonl", "16KB", "csv"), ("parquet", "rows250", "parquet"),
          ("csv", "rows250", "jsonl"), ("jsonl", "partitionKeys", "parquet"), ("parquet", "default", "csv")}


def _parallelism(case: tuple[str, str, str]) -> dict:
    return {"nodeCount": 2, "processCountPerNode": 2} if case in SPREAD else {"nodeCount": 1, "processCountPerNode": 1}


# Cases that fail because of a bug in parallelrun, marked xfail(strict=True): (input, batching, output) → the bug.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


def _tabular_cases():
    for fmt in INPUTS:
        for batching in BATCHINGS:
            for out in OUTPUTS:
                marks = []
                reason = KNOWN_BUGS.get((fmt, batching, out))
                if reason:
                    marks.append(pytest.mark.xfail(strict=True, reason=reason))
                yield pytest.param(fmt, batching, out, _parallelism((fmt, batching, out)), marks=marks,
                                   id=f"{fmt}-{batching}-{out}")


# -- reading the output -------------------------------------------------------------------------


def read_output(path, fmt: str, columns: list[str]) -> pd.DataFrame:
    """The merged output as a DataFrame, read with plain pandas/pyarrow/json."""
    if fmt == "csv":
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") == ROWS + 1, "one header line and one line per row"
        return pd.read_csv(io.StringIO(text), keep_default_na=False, dtype={"group": str, "text": str})
    if fmt == "parquet":
        return pq.read_table(path).to_pandas()
    if fmt == "jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        for n, record in enumerate(records):
            assert isinstance(record, dict) and list(record) == columns, f"line {n + 1}: {lines[n]!r}"
        return pd.DataFrame.from_records(records, columns=columns)
    assert fmt == "txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].split(" ", 1)[0] != "id", "AML's txt has no header"
    # Texts hold spaces, so only the first token is certain: the id, in plan order.
    ids = [int(line.split(" ", 1)[0]) for line in lines]
    df = pd.read_csv(io.StringIO("\n".join(lines) + "\n"), sep=" ", header=None, names=columns,
                     quotechar='"', keep_default_na=False, dtype={"group": str, "text": str})
    assert df["id"].tolist() == ids
    return df


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    got_ids, want_ids = got["id"].astype("int64").tolist(), expected["id"].tolist()
    if got_ids != want_ids:
        first = next(n for n, (a, b) in enumerate(zip(got_ids, want_ids)) if a != b)
        pytest.fail(f"rows out of plan order from row {first}: got ids {got_ids[first:first + 8]}..., "
                    f"expected {want_ids[first:first + 8]}...")
    for column in ("group", "text"):
        assert got[column].astype(str).tolist() == expected[column].tolist(), column
    for column in ("x", "y"):
        np.testing.assert_allclose(got[column].astype("float64").to_numpy(), expected[column].to_numpy(),
                                   rtol=1e-12, atol=1e-9, err_msg=column)


# -- the tabular matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("input_format, batching, output_format, parallelism", list(_tabular_cases()))
def test_tabular(job, tabular_input, input_format, batching, output_format, parallelism):
    folders, frames = tabular_input
    job.script(SCORE_TABULAR)
    path = job.write(input={"uri": str(folders[input_format]), "type": "tabular", "format": input_format},
                     output={"format": output_format, "fileName": f"out.{output_format}"},
                     **_batching_spec(batching), **parallelism)
    summary = quiet_run(path)

    partitioned = batching == "partitionKeys"
    expected = expected_frame(frames, partitioned)
    got = read_output(job.final(f"out.{output_format}"), output_format, list(expected.columns))
    assert_same_rows(got, expected)

    assert summary["status"] == "Succeeded", summary
    assert summary["items"] == {"succeeded": ROWS, "failed": 0}
    mini_batches = summary["miniBatches"]
    assert mini_batches["failed"] == 0
    assert mini_batches["succeeded"] + mini_batches["failed"] == summary["plan"]["miniBatches"]
    assert mini_batches["total"] == summary["plan"]["miniBatches"]
    by_size = batching in ("default", "16KB") and input_format in ("csv", "jsonl")
    if by_size:  # csv/jsonl cut by bytes: only reading tells the rows
        assert summary["plan"]["items"] in (None, ROWS)
    else:
        assert summary["plan"]["items"] == ROWS

    planned = summary["plan"]["miniBatches"]
    if batching == "default":  # "1MB": every file is smaller, and mini-batches never span files
        assert planned == len(FILES)
    elif batching == "16KB":  # several mini-batches in a file
        assert planned > len(FILES)
    elif batching == "rows250":
        at_least = sum(math.ceil(n / 250) for _, n in FILES)
        if input_format == "parquet":  # whole row groups of 100 up to 250 rows: 200 at a time
            assert planned >= at_least
        else:
            assert planned == at_least
    else:  # one mini-batch per group value
        assert planned == len(GROUPS)


# -- files input × every output format ---------------------------------------------------------------


def _file_contents() -> dict[str, str]:
    return {f"doc_{i:03d}.txt": f"{SPECIALS[i % len(SPECIALS)]} {i}" for i in range(FILE_COUNT)}


@pytest.mark.parametrize("output_format, parallelism", [
    ("txt", {"nodeCount": 2, "processCountPerNode": 2}),
    ("csv", {"nodeCount": 1, "processCountPerNode": 1}),
    ("parquet", {"nodeCount": 2, "processCountPerNode": 1}),
    ("jsonl", {"nodeCount": 1, "processCountPerNode": 2}),
], ids=["txt", "csv", "parquet", "jsonl"])
def test_files(job, output_format, parallelism):
    contents = _file_contents()
    # Written in reverse: plan order is the sorted order, not the order of creation.
    for name in sorted(contents, reverse=True):
        (job.data / name).write_text(contents[name], encoding="utf-8")
    job.script(SCORE_FILES)
    summary = quiet_run(job.write(miniBatchSize=FILES_BATCH, output={"format": output_format,
                                                                     "fileName": f"out.{output_format}"},
                                  **parallelism))
    expected = [f"{name}:{contents[name]}" for name in sorted(contents)]
    final = job.final(f"out.{output_format}")
    if output_format == "txt":  # a list element as its string, one a line
        assert final.read_text(encoding="utf-8").splitlines() == expected
    elif output_format == "jsonl":  # a plain list: one JSON value a line
        assert [json.loads(line) for line in final.read_text(encoding="utf-8").splitlines()] == expected
    elif output_format == "csv":  # a list becomes one column named `result`
        df = pd.read_csv(final, keep_default_na=False, dtype=str)
        assert list(df.columns) == ["result"] and df["result"].tolist() == expected
    else:
        table = pq.read_table(final)
        assert table.column_names == ["result"] and table["result"].to_pylist() == expected

    assert summary["status"] == "Succeeded", summary
    assert summary["items"] == {"succeeded": FILE_COUNT, "failed": 0}
    assert summary["plan"]["items"] == FILE_COUNT
    assert summary["plan"]["miniBatches"] == math.ceil(FILE_COUNT / FILES_BATCH)
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] == summary["plan"]["miniBatches"]
    assert summary["miniBatches"]["failed"] == 0
