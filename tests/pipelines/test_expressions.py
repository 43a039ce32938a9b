"""${{...}} expressions: found, checked against what a place may see, substituted as text or typed."""

import pytest

from parallelrun.runner.pipelines.expressions import Ref, Scope, find, locate, problem, references, substitute

PIPELINE = Scope(parameters=["maxIter", "scoringDate"],
                 steps={"train": ("model",), "score": ("output", "outputFile"), "publish": (), "later": None})
COMPONENT = Scope(inputs=["data", "max_iter"], outputs=["model"])


def check(text: str, scope: Scope = PIPELINE) -> str | None:
    (ref,) = find(text)
    return problem(ref, scope)


def test_find_takes_spaces_and_several_expressions():
    refs = find("a ${{ parameters.maxIter }} b ${{steps.train.outputs.model}}")
    assert refs == [Ref("${{ parameters.maxIter }}", "parameters.maxIter"),
                    Ref("${{steps.train.outputs.model}}", "steps.train.outputs.model")]
    assert [r.scope for r in refs] == ["parameters", "steps"]
    assert refs[1].names == ("train", "model") and refs[1].step == "train" and refs[0].step is None


@pytest.mark.parametrize("text", ["${{parameters}}", "${{steps.train.model}}", "${{run.id}}", "${{1 + 2}}",
                                  "${{os.system('rm')}}", "${{parameters.a.b}}"])
def test_malformed_expressions_are_named_with_the_forms_to_use(text):
    (ref,) = find(text)
    assert ref.scope is None
    assert problem(ref, PIPELINE) == (f"{text} is not an expression parallelrun knows; use one of "
                                      "${{parameters.NAME}}, ${{steps.STEP.outputs.NAME}}, ${{run.name}}, "
                                      "${{run.workdir}}, ${{run.status}}, ${{schedule.scheduledTime}}, "
                                      "${{trigger.manifest}}")


def test_whole_expression_keeps_the_value_type():
    spec = {"maxIter": "${{parameters.maxIter}}", "dry": "${{ parameters.dry }}", "ratio": "${{parameters.r}}"}
    assert substitute(spec, {"parameters.maxIter": 500, "parameters.dry": False, "parameters.r": 0.5}) == \
        {"maxIter": 500, "dry": False, "ratio": 0.5}


def test_inside_a_longer_string_a_value_is_text():
    values = {"parameters.maxIter": 500, "parameters.dry": True, "run.workdir": "az://p/iris/run-1"}
    assert substitute("--iter=${{parameters.maxIter}} --dry=${{parameters.dry}}", values) == "--iter=500 --dry=true"
    assert substitute("${{run.workdir}}/score/", values) == "az://p/iris/run-1/score/"
    assert substitute("${{parameters.maxIter}}${{parameters.maxIter}}", values) == "500500"


def test_substitution_goes_through_dicts_and_lists_and_leaves_the_rest():
    spec = {"command": ["python", "${{steps.train.outputs.model}}"], "env": [{"name": "${{run.name}}"}],
            "count": 3, "flag": True, "${{run.name}}": "keys stay"}
    values = {"steps.train.outputs.model": "az://m/", "run.name": "nightly"}
    assert substitute(spec, values) == {"command": ["python", "az://m/"], "env": [{"name": "nightly"}],
                                        "count": 3, "flag": True, "${{run.name}}": "keys stay"}


def test_expressions_without_a_value_stay_as_written():
    text = "${{run.status}} ${{steps.score.outputs.output}} ${{bogus}}"
    assert substitute(text, {"run.name": "x"}) == text
    assert substitute("${{run.status}}", {}) == "${{run.status}}"


def test_references_are_the_steps_whose_outputs_are_used():
    spec = {"model": {"uri": "${{steps.train.outputs.model}}"},
            "args": ["${{steps.score.outputs.output}}/${{steps.train.outputs.model}}", "${{parameters.x}}"]}
    assert references(spec) == {"train", "score"}
    assert references({"a": "${{run.name}}", "b": 3}) == set()


def test_locate_gives_each_expression_its_path():
    spec = {"batchInference": {"output": {"uri": "${{run.workdir}}/x"}, "arguments": ["a", "${{parameters.p}}"]}}
    assert [(path, ref.key) for path, ref in locate(spec, "spec.steps[0]")] == [
        ("spec.steps[0].batchInference.output.uri", "run.workdir"),
        ("spec.steps[0].batchInference.arguments[1]", "parameters.p")]


@pytest.mark.parametrize("text", ["${{parameters.maxIter}}", "${{steps.train.outputs.model}}",
                                  "${{steps.score.outputs.outputFile}}", "${{steps.later.outputs.anything}}",
                                  "${{run.name}}", "${{run.workdir}}"])
def test_what_a_pipeline_step_may_use(text):
    assert check(text) is None


@pytest.mark.parametrize("text", ["${{schedule.scheduledTime}}", "${{trigger.manifest}}"])
def test_schedule_values_belong_in_a_schedule_template(text):
    assert check(text) == (f"{text} is set by a PipelineSchedule when it creates the run; use it only in a "
                           "PipelineSchedule's spec.template")


@pytest.mark.parametrize(("text", "expected"), [
    ("${{parameters.maxiter}}", "${{parameters.maxiter}} names no parameter; did you mean maxIter?"),
    ("${{parameters.zzz}}", "${{parameters.zzz}} names no parameter; declare it under spec.parameters "
                            "(known: maxIter, scoringDate)"),
    ("${{steps.trian.outputs.model}}", "${{steps.trian.outputs.model}} names no step; did you mean train?"),
    ("${{steps.train.outputs.modle}}", "${{steps.train.outputs.modle}}: step train has no output 'modle'; "
                                       "did you mean model?"),
    ("${{steps.score.outputs.x}}", "${{steps.score.outputs.x}}: step score has no output 'x'; "
                                   "use one of its outputs (known: output, outputFile)"),
    ("${{steps.publish.outputs.x}}", "${{steps.publish.outputs.x}}: step publish has no outputs; only "
                                     "batchInference and component steps have outputs"),
    ("${{run.status}}", "${{run.status}} is known only once the steps are over; use it in a step under "
                        "spec.finally"),
    ("${{inputs.data}}", "${{inputs.data}} belongs in a component's command; a pipeline step uses "
                         "${{parameters.NAME}} or ${{steps.STEP.outputs.NAME}}"),
])
def test_what_a_pipeline_step_may_not_use(text, expected):
    assert check(text) == expected


def test_run_status_is_for_finally_steps():
    assert check("${{run.status}}", Scope(run_status=True)) is None


def test_what_a_component_may_use():
    assert check("${{inputs.max_iter}}", COMPONENT) is None and check("${{outputs.model}}", COMPONENT) is None
    assert check("${{inputs.maxiter}}", COMPONENT) == "${{inputs.maxiter}} names no input; did you mean max_iter?"
    assert check("${{outputs.metrics}}", COMPONENT) == ("${{outputs.metrics}} names no output; declare it under "
                                                        "outputs (known: model)")
    assert check("${{parameters.maxIter}}", COMPONENT) == (
        "${{parameters.maxIter}}: a component sees only its inputs and outputs; declare an input and pass "
        "the value to it from the pipeline step")
    assert check("${{bogus}}", COMPONENT) == ("${{bogus}} is not an expression parallelrun knows; use one of "
                                              "${{inputs.NAME}}, ${{outputs.NAME}}")
