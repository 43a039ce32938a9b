"""An entry script as AML's batch scoring documentation writes one: the model path from
its arguments (read with parse_known_args, as AML adds its own), init() once, run() per
mini-batch returning one row per input row. The "model" is a petal-length threshold."""
import argparse
import json
import os

import pandas as pd

model = None


def init():
    global model
    parser = argparse.ArgumentParser(allow_abbrev=False, description="iris scorer")
    parser.add_argument("--model", type=str, help="model folder")
    args, _ = parser.parse_known_args()
    with open(os.path.join(args.model, "model.json")) as f:
        model = json.load(f)
    assert os.environ["AZUREML_PARALLEL_EXAMPLE"] == "iris_yaml"


def run(mini_batch):
    print(f"run method start: {__file__}, run({mini_batch.shape[0]} rows)")
    predicted = ["setosa" if length < model["setosa_below"] else "other" for length in mini_batch["petal_length"]]
    return pd.DataFrame({"id": mini_batch["id"], "prediction": predicted})
