"""The pipeline's step graph: what runs next, what is skipped, and how the run stands.

Pure functions over a `Graph` and the steps' states (a mapping of step name to state;
a step not in it is Pending). Whoever drives the run (local mode, the operator) asks
`advance`, does what it says, records the new states and asks again.

- A step runs once every step it needs is Succeeded or Reused (Reused: its outputs
  came from an earlier run; status shows it as phase Succeeded, `reused: true`).
- A step that needs a Failed or Skipped step is Skipped; steps that do not need the
  failed one go on.
- `finally` steps start once every regular step is over (Succeeded, Reused, Failed or
  Skipped), whatever happened; among themselves they follow the same rules.
- The run is Pending until a step leaves Pending, Running until every step is over,
  then Failed if any step failed, else Succeeded.

Lists come in spec order (regular steps, then finally steps), so decisions are
deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# Final: each is its Literal where one is expected (a run's phase is a condition's Phase).
PENDING: Final = "Pending"
RUNNING: Final = "Running"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
SKIPPED: Final = "Skipped"
REUSED: Final = "Reused"
OVER = frozenset({SUCCEEDED, FAILED, SKIPPED, REUSED})
GOOD = frozenset({SUCCEEDED, REUSED})
BAD = frozenset({FAILED, SKIPPED})

States = Mapping[str, str]


@dataclass(frozen=True)
class Graph:
    steps: tuple[str, ...]  # the regular steps, in spec order
    finally_steps: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]  # step → the steps it needs (dependsOn and referenced outputs)

    @property
    def names(self) -> tuple[str, ...]:
        return self.steps + self.finally_steps


@dataclass(frozen=True)
class Advance:
    skip: list[str]  # to mark Skipped now
    start: list[str]  # to start now (or mark Reused)
    phase: str  # the run's phase once both are done


def skipped(graph: Graph, states: States) -> list[str]:
    """Pending steps that can never run: a step they need (directly or not) failed or was skipped."""
    bad = {name for name in graph.names if states.get(name, PENDING) in BAD}
    found: set[str] = set()
    while True:
        more = {name for name in graph.names if states.get(name, PENDING) == PENDING and name not in found
                and any(need in bad for need in graph.needs.get(name, ()))}
        if not more:
            return [name for name in graph.names if name in found]
        found |= more
        bad |= more


def ready(graph: Graph, states: States) -> list[str]:
    """Pending steps whose needs are all Succeeded or Reused: what to start now."""
    states = _with_skips(graph, states)
    regular_over = all(states.get(name, PENDING) in OVER for name in graph.steps)
    candidates = graph.names if regular_over else graph.steps
    return [name for name in candidates if states.get(name, PENDING) == PENDING
            and all(states.get(need, PENDING) in GOOD for need in graph.needs.get(name, ()))]


def phase(graph: Graph, states: States) -> str:
    """The run's phase: Pending, Running, Succeeded or Failed."""
    if all(states.get(name, PENDING) == PENDING for name in graph.names):
        return PENDING
    effective = _with_skips(graph, states)
    if any(effective.get(name, PENDING) not in OVER for name in graph.names):
        return RUNNING
    return FAILED if any(effective.get(name) == FAILED for name in graph.names) else SUCCEEDED


def run_status(graph: Graph, states: States) -> str:
    """`${{run.status}}` for finally steps: Failed if a regular step failed or was skipped."""
    effective = _with_skips(graph, states)
    return FAILED if any(effective.get(name, PENDING) in BAD for name in graph.steps) else SUCCEEDED


def advance(graph: Graph, states: States) -> Advance:
    """What to do now: the steps to mark Skipped, the steps to start, and the phase after."""
    skip = skipped(graph, states)
    start = ready(graph, states)
    after = {**states, **dict.fromkeys(skip, SKIPPED), **dict.fromkeys(start, RUNNING)}
    return Advance(skip, start, phase(graph, after))


def cycles(graph: Graph) -> list[tuple[str, ...]]:
    """One cycle per group of steps that need each other, e.g. ("a", "b", "a"): a runs before b.

    Each cycle starts at its group's first step in spec order and is a shortest one.
    """
    order = {name: i for i, name in enumerate(graph.names)}
    after: dict[str, list[str]] = {name: [] for name in graph.names}  # step → the steps that need it
    for name in graph.names:
        for need in graph.needs.get(name, ()):
            if need in after:
                after[need].append(name)
    found = []
    for group in _strong_components(graph.names, after):
        start = min(group, key=order.__getitem__)
        if len(group) > 1 or start in after[start]:
            found.append(_shortest_cycle(start, after, group))
    return sorted(found, key=lambda cycle: order[cycle[0]])


def _with_skips(graph: Graph, states: States) -> dict[str, str]:
    return {**states, **dict.fromkeys(skipped(graph, states), SKIPPED)}


def _strong_components(names: tuple[str, ...], edges: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in names:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(edges[succ])))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _shortest_cycle(start: str, edges: Mapping[str, list[str]], group: set[str]) -> tuple[str, ...]:
    """Breadth-first from `start` back to it, inside its group."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in edges[node]:
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return (*reversed(path), start)
                if succ in group and succ not in came_from:
                    came_from[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is in a cycle")  # pragma: no cover - a group of 2+ steps always has one
