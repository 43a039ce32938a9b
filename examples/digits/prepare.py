"""Make the digits example's data and model.

Writes scikit-learn's bundled 8x8 digits (1797 images) as grayscale PNG files, plus
three corrupt .png files the scoring script must skip, and trains the classifier
that score.py loads.

    python examples/digits/prepare.py
"""
import argparse
from pathlib import Path

import joblib
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).resolve().parent
SEED = 42


def write_images(images, data_dir):
    """Write the images as digit_00000.png ... and return the paths."""
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(images):
        path = data_dir / f"digit_{i:05d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(path)
    return paths


def write_corrupt_files(data_dir, valid_png):
    """Three files named *.png that no image library can decode."""
    corrupt = {
        "corrupt_empty.png": b"",
        "corrupt_random.png": np.random.default_rng(SEED).bytes(200),
        "corrupt_truncated.png": valid_png.read_bytes()[:60],  # ends inside the pixel data
    }
    for name, content in corrupt.items():
        (data_dir / name).write_bytes(content)
    return list(corrupt)


def train_model(images, target, model_dir):
    # Features as score.py computes them from a PNG: pixels scaled to [0, 1].
    X = images.reshape(len(images), -1) / 255
    model = LogisticRegression(max_iter=1000).fit(X, target)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.joblib"
    joblib.dump(model, path)
    return path, model.score(X, target)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--model-dir", type=Path, default=HERE / "model")
    args = parser.parse_args()

    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)  # 0-16 -> 0-255
    paths = write_images(images, args.data_dir)
    corrupt = write_corrupt_files(args.data_dir, paths[0])
    print(f"wrote {len(paths)} PNG images and {len(corrupt)} corrupt files "
          f"({', '.join(corrupt)}) to {args.data_dir}")
    model_path, accuracy = train_model(images, digits.target, args.model_dir)
    print(f"wrote {model_path} (LogisticRegression, training accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main()
