"""Scoring script of the digits example: one "<file name>: <digit>" line per image."""
import logging
import os

import joblib
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["PARALLELRUN_MODEL_DIR"], "model.joblib"))


def run(mini_batch):
    names, pixels = [], []
    for path in mini_batch:
        try:
            with Image.open(path) as image:
                pixels.append(np.asarray(image.convert("L"), dtype=np.float64).reshape(64) / 255)
        except (OSError, ValueError) as error:
            # Skipped, so the runner counts this file as one failed item.
            log.warning("skipping %s: %s", path, error)
            continue
        names.append(os.path.basename(path))
    if not pixels:
        return []
    return [f"{name}: {digit}" for name, digit in zip(names, model.predict(np.stack(pixels)))]
