"""docs/reference.md: generated from the CRDs' source, and covering every field a user can write."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from parallelrun.runner.pipelines import component

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
CRDS = {"BatchInferenceJob": "batchinferencejobs.yaml", "PipelineRun": "pipelineruns.yaml",
        "PipelineSchedule": "pipelineschedules.yaml"}
# Subtrees the reference describes once, in another section: (prefix, section, prefix there).
SHARED = [("spec.steps[].batchInference.", "BatchInferenceJob", "spec."),
          ("spec.finally[].batchInference.", "BatchInferenceJob", "spec."),
          ("spec.template.spec.", "PipelineRun", "spec."),
          ("batchInference.", "BatchInferenceJob", "spec.")]


def generator():
    spec = importlib.util.spec_from_file_location("crd_generator", ROOT / "crds" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections() -> dict[str, dict[str, list[str]]]:
    """Each `## ` section's table rows: field path → its cells (type, default, meaning, Azure ML)."""
    result, current = {}, None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            current = result.setdefault(line[3:].strip(), {})
        elif current is not None and (row := re.match(r"^\| `([^`]+)` \| (.*) \|$", line)):
            current[row.group(1)] = [cell.strip() for cell in re.split(r"(?<!\\)\|", row.group(2))]
    return result


def schema_paths(schema: dict, path: str = ""):
    """Every field path under a schema, as the reference writes them ([] for list items, <name> for map keys)."""
    for name, child in schema.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        yield here
        yield from schema_paths(child, here)
    if "items" in schema:
        yield from schema_paths(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_paths(schema["additionalProperties"], f"{path}.<name>")


def documented(found: dict, section: str, path: str) -> bool:
    for prefix, other, there in SHARED:
        if path.startswith(prefix):
            return documented(found, other, there + path[len(prefix):])
    return path in found[section]


def test_the_committed_reference_is_the_generated_one():
    assert REFERENCE.read_text() == generator().reference(), "docs/reference.md is out of date: run python crds/generate.py"


@pytest.mark.parametrize("kind", CRDS)
def test_every_field_of_each_crd_is_in_the_reference(kind):
    """Walks the committed CRD, not the generator's walk: a field the generator skipped fails here."""
    crd = yaml.safe_load((ROOT / "crds" / CRDS[kind]).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found = sections()
    paths = [p for p in schema_paths(schema) if p.startswith(("spec.", "status."))]
    assert len(paths) > 20
    missing = [p for p in paths if not documented(found, kind, p)]
    assert missing == []


@pytest.mark.parametrize("kind", CRDS)
def test_each_row_has_a_type_a_meaning_and_the_crds_default(kind):
    crd = yaml.safe_load((ROOT / "crds" / CRDS[kind]).read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rows = sections()[kind]
    for path, (type_text, default, meaning, aml) in rows.items():
        assert type_text and meaning and default and aml, (path, type_text, meaning)
    for path, node in _nodes(spec, "spec"):
        if path in rows and "default" in node:
            assert yaml.safe_load(rows[path][1].strip("`")) == node["default"], path


def _nodes(schema: dict, path: str):
    for name, child in schema.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from _nodes(child, f"{path}.{name}")


def test_the_azure_ml_names_are_in_their_column():
    rows = sections()["BatchInferenceJob"]
    expected = {"spec.nodeCount": "node_count", "spec.miniBatchSize": "mini_batch_size",
                "spec.processCountPerNode": "process_count_per_node", "spec.runMaxTry": "run_max_try",
                "spec.output.fileName": "append_row_file_name", "spec.input.type": "TabularDataset, FileDataset",
                "spec.errorThreshold": "error_threshold", "spec.initTimeout": "—"}
    assert {path: rows[path][3] for path in expected} == expected
    assert not rows["spec.nodeCount"][2].startswith("["), "the AML name is moved out of the meaning"


def test_the_component_file_is_covered_and_agrees_with_its_loader():
    """The Component section is what load_component accepts: its fields, an input's, an output's."""
    rows = sections()["Component file"]
    assert set(component._FIELDS) == {p for p in rows if "." not in p and "<" not in p}
    assert {p.split(".")[-1] for p in rows if p.startswith("inputs.<name>.")} == set(component._INPUT_FIELDS)
    assert {p.split(".")[-1] for p in rows if p.startswith("outputs.<name>.")} == {"type", "description"}
    schema = generator().component_schema()
    for path in schema_paths(schema):
        assert documented({**sections(), "Component file": rows}, "Component file", path), path


@pytest.mark.parametrize("example", sorted((ROOT / "examples" / "components").glob("*/component.yaml")),
                         ids=lambda p: p.parent.name)
def test_every_field_an_example_component_writes_is_in_the_reference(example):
    doc = yaml.safe_load(example.read_text())
    found = sections()
    for path in _written(doc):
        assert documented(found, "Component file", path), path


def _written(doc: dict, path: str = ""):
    for key, value in doc.items():
        here = f"{path}.{key}" if path else key
        if path in ("inputs", "outputs"):
            here = f"{path}.<name>"  # a name the file chose: its fields are documented, not itself
        else:
            yield here
        if isinstance(value, dict) and key not in ("tags",) and here not in ("batchInference.input.options",):
            yield from _written(value, here)
