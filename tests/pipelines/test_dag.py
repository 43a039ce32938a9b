"""The step graph: what starts, what is skipped, finally steps, the run's phase and status."""

from parallelrun.runner.pipelines.dag import (
    FAILED,
    PENDING,
    REUSED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Advance,
    Graph,
    advance,
    cycles,
    phase,
    ready,
    run_status,
    skipped,
)


def graph(needs: dict[str, tuple[str, ...]], finally_steps: dict[str, tuple[str, ...]] | None = None) -> Graph:
    finally_steps = finally_steps or {}
    return Graph(tuple(needs), tuple(finally_steps), {**needs, **finally_steps})


def drive(g: Graph, outcome: dict[str, str]) -> tuple[list[list[str]], dict[str, str]]:
    """Run the graph to its end as a driver would: each started step ends as `outcome` says
    (default Succeeded), all started steps of a round at once. Returns each round's starts."""
    states: dict[str, str] = {}
    rounds = []
    while True:
        step = advance(g, states)
        states.update(dict.fromkeys(step.skip, SKIPPED))
        if not step.start:
            assert step.phase in (SUCCEEDED, FAILED)
            return rounds, states
        rounds.append(step.start)
        states.update({name: outcome.get(name, SUCCEEDED) for name in step.start})


def test_linear():
    g = graph({"a": (), "b": ("a",), "c": ("b",)})
    assert phase(g, {}) == PENDING and ready(g, {}) == ["a"]
    assert ready(g, {"a": RUNNING}) == [] and phase(g, {"a": RUNNING}) == RUNNING
    assert ready(g, {"a": SUCCEEDED}) == ["b"] and phase(g, {"a": SUCCEEDED}) == RUNNING
    assert phase(g, {"a": SUCCEEDED, "b": SUCCEEDED, "c": SUCCEEDED}) == SUCCEEDED
    assert drive(g, {}) == ([["a"], ["b"], ["c"]], {"a": SUCCEEDED, "b": SUCCEEDED, "c": SUCCEEDED})


def test_diamond_joins_once_both_branches_succeeded():
    g = graph({"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")})
    assert ready(g, {"a": SUCCEEDED}) == ["b", "c"]
    assert ready(g, {"a": SUCCEEDED, "b": SUCCEEDED, "c": RUNNING}) == []
    assert drive(g, {})[0] == [["a"], ["b", "c"], ["d"]]


def test_a_failed_step_skips_its_dependants_others_go_on_and_finally_runs():
    g = graph({"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "x": ()}, {"notify": ()})
    states = {"a": SUCCEEDED, "b": FAILED, "x": RUNNING}
    assert skipped(g, states) == ["c", "d"]
    assert advance(g, states).skip == ["c", "d"] and advance(g, states).start == []
    assert phase(g, states) == RUNNING, "x still runs, then notify"
    states |= {"c": SKIPPED, "d": SKIPPED, "x": SUCCEEDED}
    assert ready(g, states) == ["notify"]
    assert run_status(g, states) == FAILED
    assert phase(g, states | {"notify": SUCCEEDED}) == FAILED
    rounds, final = drive(g, {"b": FAILED})
    assert rounds == [["a", "x"], ["b"], ["notify"]]
    assert final == {"a": SUCCEEDED, "x": SUCCEEDED, "b": FAILED, "c": SKIPPED, "d": SKIPPED, "notify": SUCCEEDED}


def test_finally_steps_wait_for_every_regular_step_even_unrelated_ones():
    g = graph({"a": (), "b": ()}, {"notify": (), "cleanup": ("notify",)})
    assert ready(g, {"a": SUCCEEDED, "b": RUNNING}) == []
    assert ready(g, {"a": SUCCEEDED, "b": FAILED}) == ["notify"]
    assert ready(g, {"a": SUCCEEDED, "b": SUCCEEDED, "notify": SUCCEEDED}) == ["cleanup"]
    assert run_status(g, {"a": SUCCEEDED, "b": SUCCEEDED}) == SUCCEEDED


def test_finally_steps_start_once_the_pending_dependants_of_a_failure_are_skipped():
    g = graph({"a": (), "b": ("a",)}, {"notify": ()})
    assert ready(g, {"a": FAILED}) == ["notify"]
    assert advance(g, {"a": FAILED}) == Advance(skip=["b"], start=["notify"], phase=RUNNING)


def test_a_finally_step_using_outputs_of_a_failed_step_is_skipped():
    g = graph({"score": (), "other": ()}, {"report": ("score",), "notify": ()})
    rounds, final = drive(g, {"score": FAILED})
    assert rounds == [["score", "other"], ["notify"]]
    assert final["report"] == SKIPPED and final["notify"] == SUCCEEDED
    assert phase(g, final) == FAILED


def test_a_failed_finally_step_fails_the_run():
    g = graph({"a": ()}, {"notify": ()})
    states = {"a": SUCCEEDED, "notify": FAILED}
    assert run_status(g, states) == SUCCEEDED and phase(g, states) == FAILED


def test_a_reused_step_counts_as_succeeded():
    g = graph({"train": (), "score": ("train",)})
    assert ready(g, {"train": REUSED}) == ["score"]
    assert phase(g, {"train": REUSED, "score": SUCCEEDED}) == SUCCEEDED
    assert drive(g, {"train": REUSED})[1] == {"train": REUSED, "score": SUCCEEDED}


def test_order_is_the_spec_order_not_the_alphabet():
    g = graph({"zeta": (), "alpha": (), "mid": ("alpha", "zeta")}, {"z-final": (), "a-final": ()})
    assert ready(g, {}) == ["zeta", "alpha"]
    assert ready(g, {"zeta": FAILED, "alpha": SUCCEEDED}) == ["z-final", "a-final"]
    assert skipped(graph({"c": ("b",), "b": ("a",), "a": ()}), {"a": FAILED}) == ["c", "b"]


def test_the_run_is_pending_until_a_step_leaves_pending():
    g = graph({"a": ()})
    assert phase(g, {}) == PENDING and phase(g, {"a": PENDING}) == PENDING
    assert advance(g, {}).phase == RUNNING


def test_cycles_are_named_from_the_first_step_in_spec_order():
    g = graph({"a": ("c",), "b": ("a",), "c": ("b",), "d": ("a",)})
    assert cycles(g) == [("a", "b", "c", "a")]


def test_each_group_of_steps_in_a_cycle_is_named_once_by_a_shortest_cycle():
    g = graph({"x": ("x",), "a": ("b", "d"), "b": ("a",), "d": ("c",), "c": ("a",), "free": ()})
    assert cycles(g) == [("x", "x"), ("a", "b", "a")]
    assert cycles(graph({"a": (), "b": ("a",), "c": ("a", "b")})) == []


def test_cycles_in_a_long_chain_do_not_recurse():
    names = [f"s{i}" for i in range(5000)]
    needs = {name: (names[i - 1],) for i, name in enumerate(names)}
    assert cycles(graph(needs)) == [(*names, "s0")]
