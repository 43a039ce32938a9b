"""The iris job through parallelrun's peers: Ray Data, Spark, plain pandas, and parallelrun.

The same 10 M iris rows (bench_iris.py's data and model: parquet in,
the example's logistic regression, CSV with a header out) scored four ways, run
alternately `--repeat` times, each as a subprocess timed from launch to exit:

  pandas       bench_iris.py's baseline: one process, pyarrow read -> run() -> CSV.
  parallelrun  local mode, processCountPerNode 2 (bench_iris.py's command).
  ray          Ray Data on a local 2-CPU cluster: read_parquet -> map_batches(a class
               that calls init() once per actor, 2 actors, pandas batches) -> write_csv
               (a folder of CSV files).
  spark        PySpark, local[2]: read.parquet -> mapInPandas(run()) -> write.csv with
               a header (a folder of part files).

Every one calls examples/iris/score.py's init() and run(). Ray and Spark are installed
by this script into a virtual environment of their own under `--cache` (never a
dependency of parallelrun), with this environment's numpy, pandas, pyarrow,
scikit-learn and joblib versions, so that the model loads alike; Spark needs a Java
runtime (`java` on PATH or JAVA_HOME). The rows written by each are counted after the
first round. Ratios are against pandas and against parallelrun (median of the rounds).

    python bench/bench_peers.py                          # 10M rows, 3 rounds
    python bench/bench_peers.py --rows 1000000 --repeat 1 --only pandas,parallelrun,ray

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_iris import EXAMPLE, machine, parallelrun_command, prepare

PEERS = {"ray": "ray[data]==2.60.0", "spark": "pyspark==4.0.1"}
SHARED = ("numpy", "pandas", "pyarrow", "scikit-learn", "joblib")  # pinned to this environment's versions
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


# -- the peers' own environment ------------------------------------------------------


def peer_python(cache: Path) -> Path:
    """The peers' virtual environment's interpreter, made and filled once."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    wanted = " ".join([*PEERS.values(), *(f"{p}=={importlib.metadata.version(p)}" for p in SHARED)])
    if marker.exists() and marker.read_text() == wanted:
        return python
    print(f"installing into {venv}: {wanted}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    # cwd: not the repository root, whose operator/ folder would shadow the standard library's
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=cache)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted.split()], check=True, cwd=cache)
    marker.write_text(wanted)
    return python


# -- one run of a peer, in its own process (`--peer NAME DATA MODEL OUT`) ---------------


def load_score(model_dir: str):
    import importlib.util

    os.environ["PARALLELRUN_MODEL_DIR"] = model_dir
    sys.argv = [str(EXAMPLE / "score.py"), "--model-file", "model.joblib"]
    spec = importlib.util.spec_from_file_location("score", EXAMPLE / "score.py")
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    score.init()
    return score


def run_ray(data: str, model_dir: str, out: str) -> None:
    import ray

    class Scorer:
        def __init__(self):
            self.score = load_score(model_dir)

        def __call__(self, batch):
            result = self.score.run(batch)
            return result.assign(Prediction=result["Prediction"].astype(str))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    files = sorted(str(p) for p in Path(data).glob("*.parquet"))
    (ray.data.read_parquet(files, override_num_blocks=8)  # blocks for both actors, whatever the file count
        # 2 actors of half a CPU each: whole ones would take both CPUs and starve the read and write tasks
        .map_batches(Scorer, compute=ray.data.ActorPoolStrategy(size=2), num_cpus=0.5, batch_format="pandas",
                     batch_size=100_000)
        .write_csv(out))


def run_spark(data: str, model_dir: str, out: str) -> None:
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("iris")
             .config("spark.ui.enabled", "false").config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    def score_partitions(batches):
        score = load_score(model_dir)  # once per partition's Python worker, as init() per process
        for batch in batches:
            result = score.run(batch)
            yield result.assign(Prediction=result["Prediction"].astype(str))

    schema = ", ".join(f"{name} double" for name in FEATURES) + ", Prediction string"
    spark.read.parquet(data).mapInPandas(score_partitions, schema).write.csv(out, header=True)
    spark.stop()


def count_rows(out: Path) -> int:
    """Data rows of a CSV file or of a folder of CSV files (a header line each)."""
    files = [out] if out.is_file() else sorted(p for p in out.rglob("*") if p.is_file() and not
                                                 p.name.startswith(("_", ".")) and ".crc" not in p.name)
    rows = 0
    for path in files:
        with open(path, "rb") as f:
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))
        rows += max(lines - 1, 0)
    return rows


# -- the comparison ----------------------------------------------------------------------


def commands(args, data: Path, model: Path, outs: dict[str, Path], python: Path | None) -> dict[str, list[str]]:
    me = str(Path(__file__).resolve())
    cmds = {
        "pandas": [sys.executable, str(Path(me).with_name("bench_iris.py")), "--baseline", str(data), str(model),
                   str(outs["pandas"])],
        "parallelrun": [*parallelrun_command(), "run", str(EXAMPLE / "job.yaml"), "--fresh",
                        "--set", f"input.uri={data}/", "--set", f"model.uri={model}/",
                        "--set", f"output.uri={outs['parallelrun']}/", "--set", "processCountPerNode=2"],
    }
    for peer in PEERS:
        cmds[peer] = [str(python), me, "--peer", peer, str(data), str(model), str(outs[peer])]
    return {name: cmds[name] for name in args.only.split(",")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each runs every contender once (default 3)")
    parser.add_argument("--only", default="pandas,parallelrun,ray,spark", help="contenders, comma-separated")
    parser.add_argument("--workdir", type=Path, help="data, model and outputs (default: bench_iris.py's)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "parallelrun" / "bench-peers",
                        help="where Ray and Spark are installed (default ~/.cache/parallelrun/bench-peers)")
    parser.add_argument("--peer", nargs=4, metavar=("NAME", "DATA", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        name, *paths = args.peer
        {"ray": run_ray, "spark": run_spark}[name](*paths)
        return

    workdir = (args.workdir or Path(tempfile.gettempdir()) / f"parallelrun-bench-iris-{args.rows}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data, model = prepare(workdir, args.rows)
    names = args.only.split(",")
    python = peer_python(args.cache) if set(names) & PEERS.keys() else None
    outs = {"pandas": workdir / "peers-pandas.csv", "parallelrun": workdir / "peers-parallelrun",
            "ray": workdir / "peers-ray", "spark": workdir / "peers-spark"}
    cmds = commands(args, data, model, outs, python)
    print(f"machine: {machine()}")
    for name, cmd in cmds.items():
        print(f"{name}: {' '.join(cmd)}")
    env = dict(os.environ, COLUMNS="200", PYSPARK_PYTHON=str(python or sys.executable))
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for i in range(args.repeat):
        for name, cmd in cmds.items():
            out = outs[name]
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            log = workdir / f"peers-{name}.log"
            with open(log, "wb") as f:
                start = time.perf_counter()
                done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=workdir)
                seconds = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"{name} failed ({done.returncode}):\n{log.read_text()[-3000:]}")
            times[name].append(seconds)
            rows = f", {count_rows(out if name != 'parallelrun' else out / 'iris_predictions.csv'):,} rows out" \
                if i == 0 else ""
            print(f"round {i + 1}: {name:<11} {seconds:7.2f} s{rows}", flush=True)
    print(f"\n{args.rows:,} rows, median of {args.repeat} round(s):")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in median.items():
        ratios = [f"{seconds / median[ref]:.2f}x {ref}" for ref in ("pandas", "parallelrun") if ref in median and ref != name]
        print(f"  {name:<11} {seconds:7.2f} s  {', '.join(ratios)}")


if __name__ == "__main__":
    main()
