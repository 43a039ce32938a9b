"""Data arrival's watermark (pure): files given back by a failed run are offered once more, to one run."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from parallelrun.runner.schedules.arrival import Arrived, Watermark, forget, give_back, select
from parallelrun.runner.schedules.runs import data_run_name

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LATER = T0 + timedelta(minutes=5)


def arrived(name: str, seconds: int) -> Arrived:
    return Arrived(name, f"/in/{name}", T0 + timedelta(seconds=seconds))


def test_files_given_back_go_to_the_next_run_alone_or_with_new_ones():
    taken, moved = select([arrived("a", 1), arrived("b", 1)], Watermark(T0), LATER, 60)
    assert taken == ["/in/a", "/in/b"] and moved == Watermark(T0 + timedelta(seconds=1), ("a", "b"))
    back = give_back(moved, "run-1", taken)
    assert back.again == ("/in/a", "/in/b") and give_back(back, "run-1", taken) == back  # once per failed run
    assert select([], back, LATER, 60) == (["/in/a", "/in/b"], replace(back, again=()))
    again, moved = select([arrived("c", 2)], back, LATER, 60)
    assert again == ["/in/a", "/in/b", "/in/c"] and moved.again == () and moved.returned == ("run-1",)
    assert select([], moved, LATER, 60) == ([], moved)  # handed over: not offered a third time
    assert forget(moved, ["run-2"]).returned == ()


def test_each_offer_has_a_run_name_of_its_own():
    """Failing again and again on the same files, each offer is a new run, never adopted as the last."""
    mark, names = Watermark(T0, ("a",)), []
    for _k in range(4):
        names.append(data_run_name("s", mark.text()))
        mark = give_back(select([], mark, LATER, 60)[1], names[-1], ["/in/a"])
        mark = forget(mark, names[-1:])  # history keeps one failed run
    assert len(set(names)) == 4


def test_a_watermark_without_files_given_back_names_runs_as_before():
    """Run names hash the watermark; one with nothing given back hashes as it did before that existed."""
    mark = Watermark(T0, ("a",))
    assert json.loads(mark.text()) == {"time": "2026-01-05T06:00:00Z", "names": ["a"]}
    assert Watermark.from_dict(mark.to_dict()) == mark and mark.to_dict()["again"] == []
    assert Watermark.from_dict({"time": "2026-01-05T06:00:00Z", "names": ["a"]}) == mark
