"""The conversion of AML v2 parallel jobs across the data AML reads (uri_folder, uri_file,
MLTable over csv, parquet and JSON lines from several writers, local or fsspec paths), and
the mini_batch_context a two-parameter run() receives."""

import functools
import subprocess
import sys
import textwrap

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from parallelrun.runner.aml import AmlSpecError, convert, load_job_file
from parallelrun.runner.context import wants_context

SCRIPT = """
import pandas as pd

def run(mini_batch, mini_batch_context):
    ctx = mini_batch_context
    if isinstance(mini_batch, list):
        return [f"{p.rsplit('/', 1)[-1]} {ctx.minibatch_index} {ctx.dataset.type}" for p in mini_batch]
    return pd.DataFrame({"id": mini_batch["id"], "mb": ctx.minibatch_index,
                         "low": ctx.global_row_index_lower_bound, "keys": len(ctx.partition_key_value)})
"""


def aml_job(folder, input_, **fields) -> dict:
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "score.py").write_text(textwrap.dedent(SCRIPT))
    doc = {"type": "parallel", "inputs": {"data": input_}, "outputs": {"out": {"type": "uri_folder", "path": "out/"}},
           "input_data": "${{inputs.data}}", "max_concurrency_per_instance": 2,
           "task": {"type": "run_function", "code": "src", "entry_script": "score.py",
                    "append_row_to": "${{outputs.out}}"}, **fields}
    (folder / "job.yml").write_text(yaml.safe_dump(doc))
    return doc


def run(folder) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(folder / "job.yml")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return (folder / "out" / "parallel_run_step.txt").read_text().splitlines()


def mltable(folder, paths, read=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLTable").write_text(yaml.safe_dump({"paths": paths, "transformations": [read] if read else []}))


def table(n=250):
    return pd.DataFrame({"id": range(n), "x": [i * 0.5 for i in range(n)]})


def write_pyarrow_parquet(folder):
    pq.write_table(pa.Table.from_pandas(table(), preserve_index=False), folder / "part-0.parquet", row_group_size=40)
    return [{"pattern": "./*.parquet"}], "read_parquet"


def write_pandas_jsonl(folder):
    table().to_json(folder / "rows.jsonl", orient="records", lines=True)
    return [{"file": "./rows.jsonl"}], "read_json_lines"


def write_semicolon_csv(folder):
    (folder / "rows.csv").write_text("id;x\n" + "".join(f"{i};{i * 0.5}\n" for i in range(250)), encoding="latin1")
    return [{"file": "rows.csv"}], {"read_delimited": {"delimiter": ";", "header": "from_first_file",
                                                       "encoding": "latin1"}}


def write_spark_hive_folders(folder):
    data = table()
    for part, rows in ((0, data[:120]), (1, data[120:])):
        (folder / "data" / f"part={part}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False),
                       folder / "data" / f"part={part}" / "part-00000.snappy.parquet")
    (folder / "data" / "_SUCCESS").write_text("")
    return [{"folder": "./data"}], "read_parquet"


@pytest.mark.parametrize("writer", [write_pyarrow_parquet, write_pandas_jsonl, write_semicolon_csv,
                                    write_spark_hive_folders])
def test_mltable_inputs_are_read_as_aml_reads_them(tmp_path, writer):
    data = tmp_path / "table"
    data.mkdir()
    paths, read = writer(data)
    mltable(data, paths, read if isinstance(read, dict) else {read: {}})
    aml_job(tmp_path, {"type": "mltable", "path": "./table"}, mini_batch_size="1kb")
    lines = [line.split() for line in run(tmp_path)]
    assert [int(line[0]) for line in lines] == list(range(250))  # every row once, in input order
    assert len({line[1] for line in lines}) > 1  # several mini-batches, each its own index
    assert all(int(line[2]) <= int(line[0]) for line in lines)


def test_uri_folder_is_files_counted_per_mini_batch(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(7):
        (tmp_path / "images" / f"img_{i}.png").write_bytes(b"x")
    aml_job(tmp_path, {"type": "uri_folder", "path": "./images"}, mini_batch_size="3")
    assert run(tmp_path) == [f"img_{i}.png {i // 3} files" for i in range(7)]


def test_uri_file_is_one_file(tmp_path):
    (tmp_path / "one.txt").write_text("x")
    spec = convert(aml_job(tmp_path, {"type": "uri_file", "path": "./one.txt"}), str(tmp_path)).resource["spec"]
    assert spec["input"] == {"uri": "./one.txt", "type": "files"}
    assert run(tmp_path) == ["one.txt 0 files"]


def test_mltable_on_an_fsspec_path(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/aml-tests/sales/MLTable", yaml.safe_dump({
        "paths": [{"pattern": "./2024/*.csv"}],
        "transformations": [{"read_delimited": {"header": "no_header", "support_multi_line": True,
                                                "infer_column_types": True}}]}).encode())
    doc = aml_job(tmp_path, {"type": "mltable", "path": "memory://aml-tests/sales"}, mini_batch_size="10 MB")
    conversion = convert(doc, str(tmp_path))
    spec = conversion.resource["spec"]
    assert spec["input"] == {"type": "tabular", "uri": "memory://aml-tests/sales/2024/", "pattern": "*.csv",
                             "format": "csv", "options": {"header": False, "newlinesInValues": True}}
    assert spec["miniBatchSize"] == "10MiB"
    assert any("read_delimited.infer_column_types" in line for line in conversion.ignored)


@pytest.mark.parametrize("field, value, message", [
    ("mini_batch_size", "ten", "mini_batch_size: 'ten' is not a count of files; use an integer"),
    ("input_data", "${{inputs.nothing}}", "input_data: '${{inputs.nothing}}' names no data input"),
    ("retry_settings", {"max_retries": "2"}, "retry_settings.max_retries: '2' is not a count"),
    ("partition_keys", ["a"], "partition_keys: needs a tabular mltable input"),
    ("max_concurency_per_instance", 2, "max_concurency_per_instance: unknown field of a parallel job"),
])
def test_each_mistake_is_named_with_its_fix(tmp_path, field, value, message):
    doc = aml_job(tmp_path, {"type": "uri_folder", "path": "./images"})
    doc[field] = value
    with pytest.raises(AmlSpecError) as error:
        convert(doc, str(tmp_path))
    assert message in str(error.value)


def test_defaults_follow_aml(tmp_path):
    doc = aml_job(tmp_path, {"type": "uri_folder", "path": "./images"})
    del doc["task"]["append_row_to"], doc["max_concurrency_per_instance"]
    del doc["outputs"]
    (tmp_path / "job.yml").write_text(yaml.safe_dump(doc))
    conversion = convert(doc, str(tmp_path), "my_job")
    resource = conversion.resource
    assert resource["metadata"]["name"] == "my-job"
    assert resource["spec"]["output"] == {"uri": "outputs/", "action": "summaryOnly"}
    assert resource["spec"]["processCountPerNode"] == 1  # AML's default, not every CPU
    spec = load_job_file(str(tmp_path / "job.yml"), ["errorThreshold=4"])
    assert spec.run_max_try == 3 and spec.error_threshold == 4 and spec.output.action == "summaryOnly"


def test_program_arguments_get_paths_and_driver_settings(tmp_path):
    doc = aml_job(tmp_path, {"type": "uri_folder", "path": "./images"}, logging_level="warning")
    doc["inputs"].update({"model": {"type": "uri_folder", "path": "az://models/iris/"}, "k": 3,
                          "label": {"type": "string", "default": "a b"}})
    doc["task"]["program_arguments"] = ("--model ${{inputs.model}} --k=${{ inputs.k }} --label ${{inputs.label}} "
                                        "--out ${{outputs.out}} --run_invocation_timeout 90 --error_threshold=7")
    conversion = convert(doc, str(tmp_path))
    spec = conversion.resource["spec"]
    arguments = spec["arguments"]
    assert arguments[arguments.index("--logging_level") + 1] == "WARNING"
    tail = arguments[arguments.index("--model"):]
    assert tail == ["--model", "az://models/iris/", "--k=3", "--label", "a b", "--out", f"{tmp_path}/out/",
                    "--run_invocation_timeout", "90", "--error_threshold=7"]
    assert spec["runInvocationTimeout"] == 90 and spec["errorThreshold"] == 7
    assert any("az://models/iris/ is passed as its URL" in line for line in conversion.ignored)


def _two(mini_batch, context): ...
def _one(mini_batch): ...
def _defaulted(mini_batch, context=None): ...


@pytest.mark.parametrize("run, expected", [
    (_one, False), (_two, True), (_defaulted, True), (lambda mb: mb, False), (lambda mb, ctx: mb, True),
    (functools.partial(_two, context=None), False), (len, False), (type("R", (), {"__call__": _two})(), False),
])
def test_context_is_passed_only_to_a_two_parameter_run(run, expected):
    assert wants_context(run) is expected


def test_environment_variables_reach_the_script(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.txt").write_text("x")
    doc = aml_job(tmp_path, {"type": "uri_folder", "path": "./images"}, environment_variables={"GREETING": "hi"})
    (tmp_path / "src" / "score.py").write_text("import os\n\ndef run(mb):\n    return [os.environ['GREETING']]\n")
    (tmp_path / "job.yml").write_text(yaml.safe_dump(doc))
    assert run(tmp_path) == ["hi"]


def test_the_migration_guide_names_every_field():
    from pathlib import Path

    from parallelrun.runner import aml

    guide = (Path(__file__).resolve().parents[2] / "docs" / "from-azure-ml.md").read_text()
    v1 = ("source_directory", "entry_script", "mini_batch_size", "error_threshold", "output_action",
          "append_row_file_name", "allowed_failed_percent", "partition_keys", "node_count", "process_count_per_node",
          "run_invocation_timeout", "run_max_try", "logging_level", "environment_variables", "side_inputs",
          "arguments", "allow_reuse", "compute_target")
    v2 = [f for f in aml._JOB_FIELDS if f not in ("$schema", "type", "component", "properties", "services",
                                                    "identity", "is_deterministic", "experiment_name")]
    missing = [f for f in (*v1, *v2, *aml._TASK_FIELDS[:5], "max_retries", "instance_count") if f"`{f}" not in guide
               and f".{f}`" not in guide and f"{f}`" not in guide]
    assert missing == []


def test_an_mlflow_model_input_needs_no_entry_script(tmp_path):
    doc = aml_job(tmp_path, {"type": "uri_folder", "path": "./data"})
    doc["inputs"]["model"] = {"type": "mlflow_model", "path": "./heart-model"}
    del doc["task"]["entry_script"], doc["task"]["code"]
    spec = convert(doc, str(tmp_path)).resource["spec"]
    assert "code" not in spec and spec["model"] == {"uri": "./heart-model"}
    (tmp_path / "job.yml").write_text(yaml.safe_dump(doc))
    job = load_job_file(str(tmp_path / "job.yml"))
    assert job.code.builtin and job.output.results_per_item == "many"
