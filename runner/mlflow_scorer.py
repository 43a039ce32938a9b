"""The built-in entry script for an MLflow model: with `spec.code` omitted and `spec.model`
an MLflow model folder (one with an `MLmodel` file), each mini-batch is scored by the
model's pyfunc flavour, as Azure ML's batch deployments score MLflow models without a
scoring script.

Inputs are cast to the model's signature first (its columns, in its order, as its
types); input that does not fit stops the run at the first mini-batch (UnusableInput),
naming the column and the fix. A files input has each file read as a table (csv,
parquet, jsonl by extension) and predicted on its own. Output rows are AML's: `file`,
the input file the row came from, and `prediction`, the model's value as it returned
it (a model returning several named columns keeps them).
"""

from __future__ import annotations

import os
from typing import Any

from parallelrun.runner.context import UnusableInput

model: Any = None  # the pyfunc model, loaded by init()
signature: list | None = None  # the input ColSpecs, or None: the model takes what it gets


def init():
    global model, signature
    folder = os.environ.get("PARALLELRUN_MODEL_DIR", "")
    if not os.path.isfile(os.path.join(folder, "MLmodel")):
        raise FileNotFoundError(f"spec.code is omitted, but the model folder {folder or '(none)'} has no MLmodel "
                                "file; give spec.code.entryScript, or make spec.model.uri an MLflow model folder")
    try:
        import mlflow.pyfunc
    except ImportError:
        raise ImportError("spec.code is omitted: scoring an MLflow model needs mlflow in the scoring "
                          "environment; pip install 'parallelrun[mlflow]'") from None
    model = mlflow.pyfunc.load_model(folder)
    schema = model.metadata.get_input_schema()
    columns = schema is not None and not schema.is_tensor_spec() and schema.has_input_names()
    signature = list(schema.inputs) if columns else None


def run(mini_batch, mini_batch_context):
    import pandas as pd

    if isinstance(mini_batch, list):  # files: one table per file, predicted on its own
        frames = [_scored(_read(path), os.path.basename(path)) for path in mini_batch]
        return pd.concat(frames, ignore_index=True) if frames else []
    files = mini_batch_context.files
    return _scored(mini_batch, os.path.basename(files[0]) if len(files) == 1 else None)


def _read(path: str):
    import pandas as pd

    extension = os.path.splitext(path)[1].lower()
    if extension == ".parquet":
        return pd.read_parquet(path)
    if extension in (".jsonl", ".json"):
        return pd.read_json(path, lines=True)
    if extension in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"{os.path.basename(path)}: the MLflow scorer reads csv, parquet and jsonl files; "
                     "score other files with a scoring script (spec.code)")


def _scored(table, file_name: str | None):
    import pandas as pd

    predictions = model.predict(_cast(table, signature) if signature is not None else table)
    if isinstance(predictions, pd.DataFrame):
        out = predictions.rename(columns={predictions.columns[0]: "prediction"}) if predictions.shape[1] == 1 \
            else predictions.reset_index(drop=True)
    elif isinstance(predictions, dict):
        out = pd.DataFrame(predictions)
    else:
        values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        out = pd.DataFrame({"prediction": values})
    if file_name is not None:
        out.insert(0, "file", file_name)
    return out


def _cast(table, signature: list):
    """The table as the signature says: its columns in its order, each as its type."""
    missing = [c.name for c in signature if c.name not in table.columns and getattr(c, "required", True)]
    if missing:
        raise UnusableInput(f"the input has no column {', '.join(map(repr, missing))} that the model's signature "
                            f"requires ({_describe()}); columns read: {', '.join(map(str, table.columns))}; "
                            "give input with these columns (input.options.columnNames names a csv's columns)")
    return table.assign(**{c.name: _column(table[c.name], c) for c in signature if c.name in table.columns})[
        [c.name for c in signature if c.name in table.columns]]


def _column(values, spec):
    import numpy as np
    import pandas as pd

    kind = spec.type.name if hasattr(spec.type, "name") else str(spec.type)
    try:
        if kind in ("integer", "long"):
            numbers = pd.to_numeric(values, errors="raise")
            if numbers.isna().any() or not np.all(np.mod(numbers, 1) == 0):
                raise ValueError("not whole numbers")
            return numbers.astype("int32" if kind == "integer" else "int64")
        if kind in ("float", "double"):
            return pd.to_numeric(values, errors="raise").astype("float32" if kind == "float" else "float64")
        if kind == "boolean":
            if values.dtype == bool:
                return values
            text = values.astype(str).str.lower()
            if not text.isin(["true", "false", "1", "0"]).all():
                raise ValueError("not true/false")
            return text.isin(["true", "1"])
        if kind == "string":
            return values.astype(str)
        if kind == "datetime":
            return pd.to_datetime(values, errors="raise")
        return values
    except (ValueError, TypeError) as e:
        sample = next((v for v in values if not _fits(v, kind)), values.iloc[0] if len(values) else None)
        raise UnusableInput(f"column {spec.name!r} must be {kind} as the model's signature says ({_describe()}), "
                            f"but holds {sample!r} ({e}); fix the input, or the model's signature") from None


def _fits(value, kind: str) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return kind not in ("integer", "long") or float(value).is_integer()


def _describe() -> str:
    assert signature is not None  # asked only of a model with a signature
    return ", ".join(f"{c.name}: {c.type.name if hasattr(c.type, 'name') else c.type}" for c in signature)
