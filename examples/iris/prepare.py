"""Make the iris example's data and model.

Simulates Iris rows from per-class Gaussians fitted to scikit-learn's bundled iris
data (fixed seed) and trains the LogisticRegression that score.py loads.

    python examples/iris/prepare.py                      # 10,000 rows, a quick try
    python examples/iris/prepare.py --rows 10000000      # the real size, 4 files
"""
import argparse
import math
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).resolve().parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CHUNK_ROWS = 100_000  # rows generated at a time; also the Parquet row-group size
ROWS_PER_FILE = 2_500_000  # default --files: 1 file for a quick try, 4 for 10M rows
SEED = 42


def load_training_data():
    iris = load_iris(as_frame=True)
    X = iris.data.set_axis(FEATURES, axis=1)
    y = iris.target_names[iris.target]
    return X, y


def write_data(X, y, rows, files, fmt, data_dir):
    """Write `rows` simulated rows into `files` files, one chunk in memory at a time."""
    classes = np.unique(y)
    means = [X[y == c].mean().to_numpy() for c in classes]
    covs = [X[y == c].cov().to_numpy() for c in classes]
    rng = np.random.default_rng(SEED)
    schema = pa.schema([(name, pa.float64()) for name in FEATURES])

    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*data_dir.glob("iris_*.parquet"), *data_dir.glob("iris_*.csv")]:
        stale.unlink()

    paths = []
    for i in range(files):
        path = data_dir / f"iris_{i:04d}.{fmt}"
        file_rows = rows * (i + 1) // files - rows * i // files
        writer = pq.ParquetWriter(path, schema) if fmt == "parquet" else pacsv.CSVWriter(path, schema)
        with writer:
            for start in range(0, file_rows, CHUNK_ROWS):
                n = min(CHUNK_ROWS, file_rows - start)
                species = rng.integers(len(classes), size=n)
                chunk = np.empty((n, len(FEATURES)))
                for k in range(len(classes)):
                    mask = species == k
                    chunk[mask] = rng.multivariate_normal(means[k], covs[k], size=mask.sum())
                # Measured like the original: in cm, one decimal, never below 0.1.
                chunk = np.maximum(chunk.round(1), 0.1)
                writer.write_table(pa.Table.from_arrays(list(chunk.T), schema=schema))
        paths.append(path)
    return paths


def train_model(X, y, model_dir):
    model = LogisticRegression(max_iter=1000).fit(X, y)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.joblib"
    joblib.dump(model, path)
    return path, model.score(X, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--files", type=int, help=f"default: one per {ROWS_PER_FILE:,} rows")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--model-dir", type=Path, default=HERE / "model")
    args = parser.parse_args()
    files = args.files or max(1, math.ceil(args.rows / ROWS_PER_FILE))

    X, y = load_training_data()
    paths = write_data(X, y, args.rows, files, args.format, args.data_dir)
    print(f"wrote {args.rows:,} rows in {len(paths)} {args.format} file(s) to {args.data_dir}:")
    for path in paths:
        print(f"  {path.name}  {path.stat().st_size:,} bytes")
    model_path, accuracy = train_model(X, y, args.model_dir)
    print(f"wrote {model_path} (LogisticRegression, training accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main()
