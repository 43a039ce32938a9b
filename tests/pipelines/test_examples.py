"""The example pipeline and component load cleanly, their components read from the files."""

from pathlib import Path

import yaml
from parallelrun.runner.pipelines.component import Component, load_component_text
from parallelrun.runner.pipelines.spec import ComponentRef, load_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PIPELINE = EXAMPLES / "pipelines" / "iris" / "pipeline.yaml"
COMPONENT = EXAMPLES / "components" / "train-iris" / "component.yaml"


def read_component(ref: ComponentRef) -> Component:
    path = Path(ref.uri)
    return load_component_text(path.read_bytes(), base_dir=str(path.parent))


def test_the_train_component_loads():
    component = read_component(ComponentRef(uri=str(COMPONENT)))
    assert (component.name, component.version, component.type) == ("train_iris", "1.2", "command")
    assert {name: (i.type, i.default) for name, i in component.inputs.items()} == {
        "max_iter": ("integer", 1000), "regularization": ("number", 1.0)}
    assert component.outputs == {"model": "uri_folder"}
    assert component.command[:2] == ("python", "-c")


def test_the_iris_pipeline_loads_with_its_component():
    spec = load_pipeline(yaml.safe_load(PIPELINE.read_text()), base_dir=str(PIPELINE.parent),
                         parameters={"scoringDate": "2025-01-31"}, components=read_component)
    assert spec.name == "iris-daily"
    assert spec.run_workdir == str(PIPELINE.parent / "work" / "iris-daily")
    assert spec.parameters == {"rows": 10000, "maxIter": 1000, "scoringDate": "2025-01-31"}
    assert [(s.name, s.kind, s.needs) for s in spec.steps + spec.finally_steps] == [
        ("prepare", "container", ()), ("train", "component", ()), ("score", "batchInference", ("prepare", "train")),
        ("publish", "container", ("score",)), ("notify", "container", ())]
    assert spec.steps[1].component_ref == ComponentRef(uri=str(COMPONENT))
    assert spec.steps[1].component.outputs == {"model": "uri_folder"}
