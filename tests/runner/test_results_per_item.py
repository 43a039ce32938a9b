"""output.resultsPerItem: many — run() returns any number of rows per item (detections,
chunks); items are counted, not rows: an item succeeds unless its mini-batch failed."""

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import LocalRunError, run_local
from parallelrun.runner.spec import SpecError, load_spec


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


# Each file holds a number n: n detections (0 is an image with none); "raise" fails its mini-batch.
DETECTIONS = """
from pathlib import Path

def run(mini_batch):
    out = []
    for path in mini_batch:
        text = Path(path).read_text().strip()
        if text == "raise":
            raise ValueError(f"cannot decode {Path(path).name}")
        out += [f"{Path(path).name} box{k}" for k in range(int(text))]
    return out
"""


def detections(job, counts):
    for i, n in enumerate(counts):
        (job.data / f"img_{i:03d}.txt").write_text(str(n))


def test_files_give_any_number_of_rows_each(job):
    counts = [0, 3, 1, 0, 5, 2, 7, 0, 1]
    detections(job, counts)
    job.script(DETECTIONS)
    summary = quiet_run(job.write(miniBatchSize=2, output={"resultsPerItem": "many"}))
    assert summary["items"] == {"succeeded": 9, "failed": 0}  # items, not the 19 rows
    assert job.final().read_text().splitlines() == [
        f"img_{i:03d}.txt box{k}" for i, n in enumerate(counts) for k in range(n)]  # plan order


def test_a_failed_mini_batch_fails_its_items_and_no_rows_of_it_are_kept(job):
    detections(job, [2, "raise", 1, 4, 0, 3])
    job.script(DETECTIONS)
    summary = quiet_run(job.write(miniBatchSize=2, runMaxTry=1, output={"resultsPerItem": "many"}))
    assert summary["items"] == {"succeeded": 4, "failed": 2}
    assert summary["items"]["succeeded"] + summary["items"]["failed"] == 6
    assert job.final().read_text().splitlines() == [
        "img_002.txt box0", "img_003.txt box0", "img_003.txt box1", "img_003.txt box2", "img_003.txt box3",
        "img_005.txt box0", "img_005.txt box1", "img_005.txt box2"]
    errors = [json.loads(line) for line in open(summary["errors"])]
    assert sorted(e["item"].rsplit("/", 1)[-1] for e in errors) == ["img_000.txt", "img_001.txt"]


CHUNKS = """
import pandas as pd

def run(mini_batch):
    rows = [(r.id, c, w) for r in mini_batch.itertuples() for c, w in enumerate(r.text.split())]
    return pd.DataFrame(rows, columns=["id", "chunk", "word"])
"""


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_tabular_rows_split_into_chunks(job, fmt):
    texts = ["a b c", "d", "e f", "g h i j", "k"] * 40
    pq.write_table(pa.table({"id": range(len(texts)), "text": texts}), job.data / "docs.parquet", row_group_size=30)
    job.script(CHUNKS)
    out = {"resultsPerItem": "many", "format": fmt, "fileName": f"chunks.{fmt}"}
    summary = quiet_run(job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=25, output=out))
    assert summary["items"] == {"succeeded": 200, "failed": 0}
    expected = [(i, c, w) for i, t in enumerate(texts) for c, w in enumerate(t.split())]
    path = job.final(f"chunks.{fmt}")
    table = (pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path) if fmt == "csv"
             else pd.read_json(path, lines=True))
    assert list(table.itertuples(index=False, name=None)) == expected


def test_one_result_per_item_stays_the_default(job):
    detections(job, [1, 3, 0])
    job.script(DETECTIONS)
    with pytest.raises(LocalRunError):
        quiet_run(job.write(miniBatchSize=3, runMaxTry=1, errorThreshold=0))
    summary = job.summary()
    assert summary["items"] == {"succeeded": 0, "failed": 3}  # 4 results for 3 items: the attempt failed


def test_results_per_item_is_validated():
    with pytest.raises(SpecError, match=r"spec.output.resultsPerItem: 'several' is not one of one, many"):
        load_spec({"input": {"uri": "d/", "type": "files"}, "code": {"entryScript": "s.py"},
                   "output": {"uri": "o/", "resultsPerItem": "several"}})
    spec = {"input": {"uri": "d/", "type": "files"}, "code": {"entryScript": "s.py"}, "output": {"uri": "o/"}}
    assert "resultsPerItem" not in load_spec(spec).to_dict()["output"]  # run ids of earlier specs unchanged
