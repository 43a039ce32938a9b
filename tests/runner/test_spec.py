"""Loading a BatchInferenceJob: AML's defaults, every error at once, overrides."""

import pytest

from parallelrun.runner.spec import SpecError, load_spec, load_spec_file, parse_size


def resource(**spec):
    base = {"input": {"uri": "/data/", "type": "files"}, "code": {"entryScript": "score.py"},
            "output": {"uri": "/out/"}}
    base.update(spec)
    return {"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
            "metadata": {"name": "j", "namespace": "ns"}, "spec": base}


def test_aml_defaults():
    files = load_spec(resource())
    assert (files.mini_batch_size.unit, files.mini_batch_size.value) == ("count", 1)
    assert files.error_threshold == -1 and files.mini_batch_error_threshold == -1
    assert files.allowed_failed_percent == 100
    assert files.run_invocation_timeout == 60 and files.run_max_try == 3
    assert files.output.file_name == "parallel_run_step.txt" and files.output.action == "appendRow"
    assert files.process_count_per_node is None  # resolved where it runs: the pod's CPUs
    assert (files.name, files.namespace, files.node_count) == ("j", "ns", 1)
    tabular = load_spec(resource(input={"uri": "/d/", "type": "tabular", "format": "csv"}))
    assert (tabular.mini_batch_size.unit, tabular.mini_batch_size.value) == ("bytes", 10**6)


@pytest.mark.parametrize("text,expected", [("1MB", 10**6), ("10MB", 10**7), ("1GB", 10**9),
                                           ("64KiB", 65536), ("1.5 MB", 1_500_000), ("512B", 512)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


def test_rows_for_tabular_int_size():
    spec = load_spec(resource(input={"uri": "/d/", "type": "tabular", "format": "parquet"}, miniBatchSize=500))
    assert (spec.mini_batch_size.unit, spec.mini_batch_size.value) == ("rows", 500)


def test_every_invalid_field_is_reported_at_once_with_its_fix():
    doc = resource(miniBatchSize="1XB", nodeCount=0, errorThreshold=-5, runMaxTry="3",
                   loggingLevel="LOUD", allowedFailedPercent=150, partitionKeys=["a"], minibatchSize=3)
    doc["spec"]["input"]["format"] = "csv"
    doc["spec"]["output"]["format"] = "xlsx"
    del doc["spec"]["code"]["entryScript"]
    with pytest.raises(SpecError) as e:
        load_spec(doc)
    errors = e.value.errors
    expected = {
        "spec.miniBatchSize": "'1XB' is not a size; use an integer or a value like \"1MB\"",
        "spec.nodeCount": "below the minimum 1",
        "spec.errorThreshold": "use -1 to ignore all failures",
        "spec.runMaxTry": "expected an integer",
        "spec.loggingLevel": "'LOUD' is not one of",
        "spec.allowedFailedPercent": "use a whole number from 0 to 100, or -1 to disable",
        "spec.partitionKeys": "only a tabular input",
        "spec.minibatchSize": "did you mean miniBatchSize?",
        "spec.input.format": "only a tabular input has a format",
        "spec.output.format": "'xlsx' is not one of txt, csv, parquet, jsonl",
        "spec.code.entryScript": "required",
    }
    for path, text in expected.items():
        assert any(err.startswith(path + ":") and text in err for err in errors), (path, errors)
    assert len(errors) == len(expected)


def test_size_for_files_input_names_the_fix():
    with pytest.raises(SpecError, match=r"spec.miniBatchSize: '1MB' is a size, but a files input is batched by count"):
        load_spec(resource(miniBatchSize="1MB"))


def test_missing_sections():
    with pytest.raises(SpecError) as e:
        load_spec({"kind": "BatchInferenceJob", "spec": {}})
    assert [x.split(":")[0] for x in e.value.errors] == ["spec.input", "spec.output", "spec.code"]


def test_wrong_kind_and_version():
    doc = resource()
    doc["kind"], doc["apiVersion"] = "Job", "parallelrun.dev/v9"
    with pytest.raises(SpecError) as e:
        load_spec(doc)
    assert [x.split(":")[0] for x in e.value.errors] == ["kind", "apiVersion"]


def test_normalized_dict_round_trips():
    spec = load_spec(resource(sideInputs=[{"name": "labels", "uri": "/l.csv"}], model={"uri": "/m/"},
                              arguments=["--x", "1"], environment={"image": "i", "gpu": {"count": 2}},
                              storage={"secretRef": {"name": "s"}}, processCountPerNode=3))
    again = load_spec({"metadata": {"name": "j", "namespace": "ns"}, "kind": "BatchInferenceJob", "spec": spec.to_dict()})
    assert again == spec
    assert spec.side_inputs[0].env_var == "PARALLELRUN_SIDE_INPUT_LABELS"
    assert spec.gpu.count == 2 and spec.gpu.resource_name == "nvidia.com/gpu"


def test_file_relative_uris_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("kind: BatchInferenceJob\nmetadata: {name: x}\nspec:\n"
                    "  input: {uri: data/, type: files}\n  code: {uri: ., entryScript: s.py}\n"
                    "  output: {uri: 'az://c/out/'}\n")
    spec = load_spec_file(str(path), ["nodeCount=3", "spec.input.pattern=*.png", "errorThreshold=5"])
    assert spec.input.uri == f"{tmp_path}/data/"
    assert spec.code.uri == str(tmp_path)
    assert spec.output.uri == "az://c/out/"  # URLs are left alone
    assert (spec.node_count, spec.input.pattern, spec.error_threshold) == (3, "*.png", 5)


def test_file_errors(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec_file(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("spec: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec_file(str(tmp_path / "bad.yaml"))


def test_list_fields_take_strings_once():
    with pytest.raises(SpecError) as e:
        load_spec(resource(input={"uri": "/d/", "type": "tabular", "format": "csv"}, arguments=["--n", 5],
                           partitionKeys=["a", "a"], miniBatchSize="0MB"))
    assert sorted(x.split(":")[0] for x in e.value.errors) == [
        "spec.arguments[1]", "spec.miniBatchSize", "spec.partitionKeys[1]"]
    assert any("quote it" in x for x in e.value.errors)


@pytest.mark.parametrize("code,words", [
    ({"uri": "/code/", "entryScript": "../outside/evil.py"}, "leaves the code folder"),
    ({"uri": "/code/", "entryScript": "sub/../../evil.py"}, "leaves the code folder"),
    ({"configMap": "c", "entryScript": "/etc/evil.py"}, "is absolute"),
    ({"uri": "/code/", "entryScript": "score.sh"}, "is not a Python file"),
])
def test_entry_script_stays_inside_its_code_folder(code, words):
    with pytest.raises(SpecError) as e:
        load_spec(resource(code=code))
    assert any(line.startswith("spec.code.entryScript:") and words in line for line in e.value.errors), e.value.errors


def test_an_absolute_entry_script_is_for_code_baked_into_the_image():
    assert load_spec(resource(code={"entryScript": "/app/score.py"})).code.entry_script == "/app/score.py"


@pytest.mark.parametrize("name", ["../../../escaped", "Upper", "a/b", "-x", "x" * 254, ""])
def test_metadata_name_must_be_a_kubernetes_name(name):
    doc = resource()
    doc["metadata"]["name"] = name
    if name == "":  # an empty name is no name: the default
        assert load_spec(doc).name == "job"
        return
    with pytest.raises(SpecError) as e:
        load_spec(doc)
    assert any(line.startswith("metadata.name:") for line in e.value.errors)


def test_init_timeout_has_a_generous_default_and_round_trips():
    spec = load_spec(resource())
    assert spec.init_timeout == 600
    assert load_spec(resource(initTimeout=5)).to_dict()["initTimeout"] == 5


@pytest.mark.parametrize("field", ["queueName", "priorityClassName"])
def test_a_queue_or_priority_class_that_is_no_name_names_the_field_and_the_fix(field):
    doc = {"spec": {"input": {"uri": "d/", "type": "files"}, "code": {"entryScript": "s.py"}, "output": {"uri": "o/"},
                    field: "GPU Queue"}}
    with pytest.raises(SpecError) as e:
        load_spec(doc)
    assert e.value.errors == [f"spec.{field}: 'GPU Queue' is not a valid name; give the name of "
                              f"{'a Kueue LocalQueue of this namespace' if field == 'queueName' else 'a PriorityClass'} "
                              "(lower-case letters, digits, '-' and '.')"]
    doc["spec"][field] = "gpu-queue"
    spec = load_spec(doc)
    assert spec.to_dict()[field] == "gpu-queue" and load_spec({"spec": spec.to_dict()}) == spec
