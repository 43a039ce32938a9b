"""Iris at scale: `parallelrun run` in local mode against the plain single-process pipeline.

Target: on 10,000,000 simulated iris rows (parquet in, the example's
logistic regression), local mode with `processCountPerNode: 2` must take at most
0.65x the wall time of the plain pandas + pyarrow pipeline doing the same
read -> predict -> write, for CSV and for Parquet output, measured side by side in
one run, with the same content out.

What is timed, both as a subprocess from launch to exit (interpreter start-up and
imports included on both sides):

  baseline    one Python process: pyarrow reads every parquet file into one table
              -> pandas DataFrame -> examples/iris/score.py's run() (its init() loads
              the same model file the same way) -> pyarrow writes one CSV with a
              header (the options parallelrun's csv output uses) or one Parquet file.
  parallelrun `parallelrun run examples/iris/job.yaml --fresh --set input.uri=...
              --set model.uri=... --set output.uri=... --set processCountPerNode=2
              --set output.format=...`: start-up, planning, 2 worker processes,
              merge, summary.

For each output format the two are run alternately `--repeat` times (baseline,
parallelrun, baseline, ...) so that load from other users of the machine hits both
alike; each pair's ratio is printed, and the median of the pair ratios is judged.
Outputs are removed, and the disk synced, before each run (untimed). After the first pair the outputs are
compared: CSV byte for byte (sha256), Parquet by content (the same rows and values;
row groups differ: parallelrun writes one per mini-batch).

Each round also times the baseline's start-up alone (its imports and init(), no data):
every process pays it before it scores a row, so it is serial. That time plus the rest
of the baseline split over the processes at no cost is the start-up floor, printed as a
ratio: the best that processes starting cold can do with the baseline's own work (only
less work per row goes below it).

    python bench/bench_iris.py                       # 10M rows, 5 pairs, csv and parquet
    python bench/bench_iris.py --rows 1000000 --repeat 3 --formats parquet --workdir /tmp/iris-bench
    python bench/bench_iris.py --repeat 3 --before 1874df3    # an earlier commit too, in the same rounds

The data (examples/iris/prepare.py) is made once per --workdir and reused while its
row count matches. Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from earlier import pythonpath  # noqa: E402

EXAMPLE = ROOT / "examples" / "iris"
TARGET = 0.65


def baseline(data_dir: str, model_dir: str, out: str) -> None:
    """The plain pipeline (runs in its own process: `bench_iris.py --baseline ...`); the
    output's format follows its file name (.csv or .parquet); OUT "-": its imports and
    init() only (the start-up floor)."""
    import importlib.util

    import pyarrow as pa
    import pyarrow.parquet as pq

    os.environ["PARALLELRUN_MODEL_DIR"] = model_dir
    script = str(EXAMPLE / "score.py")
    sys.argv = [script, "--model-file", "model.joblib"]  # job.yaml's arguments
    spec = importlib.util.spec_from_file_location("score", script)
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    score.init()
    if out == "-":
        return

    files = sorted(str(p) for p in Path(data_dir).glob("*.parquet"))
    df = pq.read_table(files).to_pandas()
    result = score.run(df)
    table = pa.Table.from_pandas(result, preserve_index=False)
    if out.endswith(".parquet"):
        pq.write_table(table, out)
        return
    import pyarrow.csv as csv

    csv.write_csv(table, out, csv.WriteOptions(include_header=True, quoting_style="none", quoting_header="none"))


def prepare(workdir: Path, rows: int) -> tuple[Path, Path]:
    data, model = workdir / "data", workdir / "model"
    marker = workdir / "prepared.json"
    if marker.exists() and json.loads(marker.read_text()).get("rows") == rows and (model / "model.joblib").exists():
        print(f"reusing {rows:,} rows in {data}")
        return data, model
    print(f"making {rows:,} rows in {data} ...", flush=True)
    marker.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(EXAMPLE / "prepare.py"), "--rows", str(rows),
                    "--data-dir", str(data), "--model-dir", str(model)], check=True)
    marker.write_text(json.dumps({"rows": rows}))
    return data, model


def parallelrun_command() -> list[str]:
    exe = Path(sys.executable).with_name("parallelrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "parallelrun.cli"]


def timed(cmd: list[str], log: Path, pythonpath: str | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of the process and the children it waited for);
    `pythonpath`: an earlier parallelrun's (bench/earlier.py), run from the log's folder."""
    env = dict(os.environ, COLUMNS="200")  # rich: one line per message in the log
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "wb") as f:
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                              cwd=log.parent if pythonpath else None)
        seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def digest(path: Path) -> dict:
    h, lines, size = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
            lines += block.count(b"\n")
            size += len(block)
    return {"bytes": size, "lines": lines, "sha256": h.hexdigest()}


def same_output(fmt: str, a: Path, b: Path) -> str:
    """How the two outputs compare, or exit when they differ."""
    if fmt == "csv":
        x, y = digest(a), digest(b)
        verdict = (f"baseline {x['lines'] - 1:,} rows, {x['bytes']:,} bytes; parallelrun {y['lines'] - 1:,} rows, "
                   f"{y['bytes']:,} bytes; sha256 {'identical' if x == y else 'DIFFERENT'}")
        if x != y:
            sys.exit(verdict)
        return verdict
    import pyarrow as pa
    import pyarrow.parquet as pq

    def content(path: Path) -> pa.Table:  # a categorical's dictionary may differ by row group: compare values
        table = pq.read_table(path)
        return table.cast(pa.schema([(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                                     for f in table.schema]))
    x, y = content(a), content(b)
    same = x.equals(y)
    verdict = (f"baseline {x.num_rows:,} rows, {a.stat().st_size:,} bytes; parallelrun {y.num_rows:,} rows, "
               f"{b.stat().st_size:,} bytes; content {'identical' if same else 'DIFFERENT'}")
    if not same:
        sys.exit(verdict)
    return verdict


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB, Python {platform.python_version()}"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2


def compare(fmt: str, args, workdir: Path, data: Path, model: Path) -> float:
    """Alternating runs of both for one output format; returns the median pair ratio."""
    base_out = workdir / f"baseline.{fmt}"
    pr_dir = workdir / "parallelrun-out"
    pr_out = pr_dir / f"iris_predictions.{fmt}"
    base_cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline", str(data), str(model), str(base_out)]
    pr_cmd = [*parallelrun_command(), "run", str(EXAMPLE / "job.yaml"), "--fresh",
              "--set", f"input.uri={data}/", "--set", f"model.uri={model}/",
              "--set", f"output.uri={pr_dir}/", "--set", f"processCountPerNode={args.processes}",
              "--set", f"output.format={fmt}", "--set", f"output.fileName={pr_out.name}"]
    print(f"\n== {fmt} output (load average {load()})")
    print(f"baseline:    {' '.join(base_cmd)}")
    print(f"parallelrun: {' '.join(pr_cmd)}", flush=True)
    runs = [("baseline", base_cmd), ("parallelrun", pr_cmd), ("start-up", [*base_cmd[:-1], "-"])]
    if args.before:  # the same job through an earlier commit, in the same rounds
        runs.append((args.before, [sys.executable, "-m", "parallelrun.cli", *pr_cmd[len(parallelrun_command()):]]))
    earlier = pythonpath(args.before) if args.before else None
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    cpus: dict[str, list[float]] = {name: [] for name, _ in runs}
    for i in range(args.repeat):
        for name, cmd in (runs if i % 2 == 0 else runs[::-1]):
            if name == "baseline":
                base_out.unlink(missing_ok=True)
            elif name != "start-up":
                shutil.rmtree(pr_dir, ignore_errors=True)
            os.sync()  # the last run's output reaches the disk now, not while this one runs
            log = workdir / ("baseline.log" if name in ("baseline", "start-up") else "parallelrun.log")
            seconds, cpu = timed(cmd, log, earlier if name == args.before else None)
            times[name].append(seconds)
            cpus[name].append(cpu)
            extra = ""
            if name not in ("baseline", "start-up"):
                log = log.read_text()
                planned = re.search(r"Planned .* in ([\d.]+)s", log)
                scored = re.search(r"time: ([\d.]+)s", log)
                if planned and scored:
                    extra = f"  (planning {planned.group(1)} s, scoring + merge {scored.group(1)} s)"
            print(f"{fmt} run {i + 1}: {name:<11} {seconds:7.2f} s wall, {cpu:6.2f} s CPU{extra}", flush=True)
        print(f"{fmt} run {i + 1}: ratio       {times['parallelrun'][-1] / times['baseline'][-1]:7.3f}", flush=True)
        if i == 0:
            print(f"{fmt} outputs: {same_output(fmt, base_out, pr_out)}")  # the last run's output, either version
    ratios = [p / b for p, b in zip(times["parallelrun"], times["baseline"])]
    ratio = median(ratios)
    # Amdahl: every process imports pandas, pyarrow and the model's library and runs init()
    # before it scores a row, so that part is serial; the rest, split over the processes at no cost.
    floors = [(s + (b - s) / args.processes) / b for s, b in zip(times["start-up"], times["baseline"])]
    print(f"{fmt}: load average at the end {load()}")
    print(f"{fmt}: {args.rows:,} rows, {args.repeat} pairs: baseline median {median(times['baseline']):.2f} s "
          f"(CPU {median(cpus['baseline']):.2f} s), parallelrun median {median(times['parallelrun']):.2f} s "
          f"(CPU {median(cpus['parallelrun']):.2f} s); median pair ratio {ratio:.3f} (target <= {TARGET}); "
          f"pair ratios {', '.join(f'{r:.3f}' for r in sorted(ratios))}")
    print(f"{fmt}: start-up floor: the baseline's imports and init() alone median {median(times['start-up']):.2f} s; "
          f"that serial, the rest split over {args.processes} processes at no cost: median ratio {median(floors):.3f} "
          f"(Amdahl's bound for {args.processes} processes that start cold and do the baseline's work)")
    if args.before:
        early = [e / b for e, b in zip(times[args.before], times["baseline"])]
        print(f"{fmt}: {args.before} median {median(times[args.before]):.2f} s (CPU {median(cpus[args.before]):.2f} s); "
              f"median pair ratio {median(early):.3f}; this code / {args.before}: "
              f"{median([p / e for p, e in zip(times['parallelrun'], times[args.before])]):.3f} wall, "
              f"{median([p / e for p, e in zip(cpus['parallelrun'], cpus[args.before])]):.3f} CPU")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs per format, alternating (default 5)")
    parser.add_argument("--formats", default="csv,parquet", help="output formats, comma-separated (default csv,parquet)")
    parser.add_argument("--workdir", type=Path, help="data, model and outputs (default: a folder under the "
                                                     "system's temp dir, kept for reuse)")
    parser.add_argument("--processes", type=int, default=2, help="processCountPerNode (default 2)")
    parser.add_argument("--before", metavar="COMMIT", help="also run parallelrun as of this commit, in the same rounds")
    parser.add_argument("--baseline", nargs=3, metavar=("DATA", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(*args.baseline)
        return

    # byte-compiled, as an installed package is (and as bench/earlier.py lays out --before)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / d) for d in ("runner", "parallelrun", "examples/iris"))],
                   check=True)
    workdir = (args.workdir or Path(tempfile.gettempdir()) / f"parallelrun-bench-iris-{args.rows}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data, model = prepare(workdir, args.rows)
    print(f"machine: {machine()}")
    ratios = {fmt: compare(fmt, args, workdir, data, model) for fmt in args.formats.split(",")}
    print()
    for fmt, ratio in ratios.items():
        print(f"{fmt}: median pair ratio {ratio:.3f}: {'PASS' if ratio <= TARGET else 'MISS'} (target <= {TARGET})")


if __name__ == "__main__":
    main()
