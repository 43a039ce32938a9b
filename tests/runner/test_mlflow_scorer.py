"""An MLflow model with no scoring script: each mini-batch scored by its pyfunc flavour,
inputs cast by its signature, a mismatch a clear error at the first mini-batch, output
columns as Azure ML writes them (file, prediction)."""

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import LocalRunError, run_local
from parallelrun.runner.spec import load_spec

mlflow_sklearn = pytest.importorskip("mlflow.sklearn")


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


FEATURES = pd.DataFrame({"petal_length": [1.4, 1.3, 4.7, 4.5, 6.0, 5.9], "petal_count": [1, 1, 2, 2, 3, 3]})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A scikit-learn classifier saved as an MLflow model with a column signature (double, long)."""
    from mlflow.models import infer_signature
    from sklearn.tree import DecisionTreeClassifier

    labels = ["setosa", "setosa", "versicolor", "versicolor", "virginica", "virginica"]
    model = DecisionTreeClassifier(random_state=0).fit(FEATURES, labels)
    folder = tmp_path_factory.mktemp("mlflow") / "iris-model"
    mlflow_sklearn.save_model(model, str(folder), signature=infer_signature(FEATURES, model.predict(FEATURES)),
                              serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    return folder


def expected(lengths):
    return ["setosa" if x < 2.5 else "versicolor" if x < 5.2 else "virginica" for x in lengths]


def rows(n=60):
    lengths = [[1.4, 4.6, 5.95][i % 3] for i in range(n)]
    return pd.DataFrame({"id": range(n), "petal_length": lengths, "petal_count": [1 + i % 3 for i in range(n)]})


def test_tabular_parquet_scored_without_a_script(job, model_dir):
    data = rows()
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), job.data / "iris.parquet", row_group_size=20)
    summary = quiet_run(job.write(input={"type": "tabular", "format": "parquet"}, code=None,
                                  model={"uri": str(model_dir)}, miniBatchSize=20))
    assert summary["items"] == {"succeeded": 60, "failed": 0}
    lines = job.final().read_text().splitlines()
    assert lines == [f"iris.parquet {p}" for p in expected(data["petal_length"])]  # AML's file, prediction


def test_csv_files_each_predicted_cast_by_the_signature(job, model_dir):
    """A files input of csv files: one row per input row, named by its file; integers where
    the signature says double and floats that are whole where it says long are cast."""
    data = rows(12)
    for k in range(3):
        part = data[k * 4:(k + 1) * 4].copy()
        part["petal_count"] = part["petal_count"].astype(float)  # 1.0, 2.0: whole, castable to long
        part.to_csv(job.data / f"part-{k}.csv", index=False)
    summary = quiet_run(job.write(code=None, model={"uri": str(model_dir)}, miniBatchSize=2,
                                  output={"format": "csv", "fileName": "predictions.csv"}))
    assert summary["items"] == {"succeeded": 3, "failed": 0}
    out = pd.read_csv(job.final("predictions.csv"))
    assert list(out.columns) == ["file", "prediction"]
    assert out["file"].tolist() == [f"part-{k}.csv" for k in range(3) for _ in range(4)]
    assert out["prediction"].tolist() == expected(data["petal_length"])


def test_a_signature_mismatch_stops_the_run_at_the_first_mini_batch(job, model_dir):
    pd.DataFrame({"petal_length": ["long", "short"], "petal_count": [1, 2]}).to_csv(job.data / "bad.csv", index=False)
    with pytest.raises(LocalRunError) as error:
        quiet_run(job.write(input={"type": "tabular", "format": "csv"}, code=None, model={"uri": str(model_dir)},
                            errorThreshold=-1))
    assert error.value.exit_code == 2
    assert "column 'petal_length' must be double as the model's signature says" in str(error.value)
    assert "'long'" in str(error.value)


def test_a_missing_column_is_named(job, model_dir):
    pd.DataFrame({"petal_length": [1.0]}).to_csv(job.data / "a.csv", index=False)
    with pytest.raises(LocalRunError, match=r"the input has no column 'petal_count' that the model's signature "
                                            r"requires \(petal_length: double, petal_count: long\)"):
        quiet_run(job.write(input={"type": "tabular", "format": "csv"}, code=None, model={"uri": str(model_dir)}))


def test_a_model_folder_without_mlmodel_is_a_clear_error(job, tmp_path):
    (tmp_path / "plain-model").mkdir()
    (job.data / "a.csv").write_text("x\n1\n")
    with pytest.raises(LocalRunError, match="spec.code is omitted, but the model folder .* has no MLmodel file"):
        quiet_run(job.write(input={"type": "tabular", "format": "csv"}, code=None,
                            model={"uri": str(tmp_path / "plain-model")}))


def test_code_may_be_omitted_only_with_a_model():
    base = {"input": {"uri": "d/", "type": "files"}, "output": {"uri": "o/"}}
    with pytest.raises(ValueError, match="or omit it and give spec.model.uri an MLflow model folder"):
        load_spec(base)
    spec = load_spec({**base, "model": {"uri": "m/"}})
    assert spec.code.builtin and spec.output.results_per_item == "many"
    assert "code" not in spec.to_dict() and load_spec(spec.to_dict()) == spec  # lossless
