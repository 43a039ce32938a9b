"""A partitioned training script as AML's parallel job documents it: arguments through
parse_known_args, run(input_data, mini_batch_context) with the partition's key values,
one file per partition under the model folder, one result row per partition."""
import argparse
import json
import os

import pandas as pd


def init():
    global target_col, model_folder, argv
    parser = argparse.ArgumentParser()
    parser.add_argument("--target_col", type=str)
    parser.add_argument("--model_folder", type=str)
    parser.add_argument("--logging_level", type=str)
    parser.add_argument("--partition_keys", type=str)
    args, _ = parser.parse_known_args()
    target_col, model_folder = args.target_col, args.model_folder
    argv = {"logging_level": args.logging_level, "partition_keys": args.partition_keys}


def run(input_data, mini_batch_context):
    if not isinstance(input_data, pd.DataFrame):
        raise Exception("Not a valid DataFrame input.")
    keys = mini_batch_context.partition_key_value
    mean = float(input_data[target_col].mean())
    folder = os.path.join(model_folder, *[str(v) for v in keys.values()])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump({"mean": mean, "index": mini_batch_context.minibatch_index, **argv}, f)
    result = pd.DataFrame({key: [value] for key, value in keys.items()})
    result["mean"] = mean
    return result
