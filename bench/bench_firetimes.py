"""Speed of the PipelineSchedule fire-time engine.

Targets: a year of minute slots of one schedule through `Schedule.between` in under
1 s (cron `* * * * *` and recurrence frequency Minute, in UTC; the same cron in
Europe/Berlin, whose year has both DST transitions, is shown too), and a lookup of a
sparse schedule whose next fire is 8 years away in under 10 ms (Feb 29 across 2100,
which is no leap year). Each figure is the best of `--repeat` runs; the slots are
counted, so the result is checked as well as timed.

    python bench/bench_firetimes.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timezone

from parallelrun.runner.schedules.firetimes import parse_schedule

UTC = timezone.utc
YEAR = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
DENSE = {
    "cron * * * * * (UTC)": {"cron": "* * * * *"},
    "recurrence Minute/1 (UTC)": {"recurrence": {"frequency": "Minute", "interval": 1},
                                  "startTime": "2025-01-01T00:00:00Z"},
    "cron * * * * * (Europe/Berlin)": {"cron": "* * * * *", "timeZone": "Europe/Berlin"},
}
SPARSE = {  # schedule, lookup after, expected next fire
    "cron 0 0 29 2 *": ({"cron": "0 0 29 2 *"}, datetime(2096, 3, 1, tzinfo=UTC), datetime(2104, 2, 29, tzinfo=UTC)),
    "recurrence Month/12 monthDays [29]": (
        {"recurrence": {"frequency": "Month", "interval": 12, "monthDays": [29], "hours": [0], "minutes": [0]},
         "startTime": "2097-02-01T00:00:00Z"},
        datetime(2096, 3, 1, tzinfo=UTC), datetime(2104, 2, 29, tzinfo=UTC)),
}


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    verdicts = []
    for name, spec in DENSE.items():
        schedule = parse_schedule(spec)
        seconds, count = best_of(repeat, lambda: sum(1 for _ in schedule.between(*YEAR)))
        ok = seconds < 1 and count >= 525_540  # Berlin's year is an hour short
        verdicts.append(ok)
        print(f"{name:36} a year of minute slots: {count:,} in {seconds:.3f} s "
              f"({seconds / count * 1e9:.0f} ns a slot), target < 1 s: {'PASS' if ok else 'MISS'}")
    for name, (spec, after, expected) in SPARSE.items():
        schedule = parse_schedule(spec)
        seconds, found = best_of(repeat, lambda: schedule.next_after(after))
        ok = seconds < 0.010 and found == expected
        verdicts.append(ok)
        print(f"{name:36} next after {after:%Y-%m-%d}: {found:%Y-%m-%d} in {seconds * 1000:.2f} ms, "
              f"target < 10 ms: {'PASS' if ok else 'MISS'}")
    print("PASS" if all(verdicts) else "MISS")


if __name__ == "__main__":
    main()
