"""scikit-learn's bundled digits as 32×32 images, made by the package's own pre-processing.

Each 8×8 digit (values 0–16) becomes an 8-bit grey image — what a PNG of it holds — and goes
through the same steps the package declares, so a served PNG meets the tensors trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bushu.package.manifest import Step
from bushu.runtime.processing import preprocess

LABELS = [str(d) for d in range(10)]
PREPROCESSING = [
    Step(kind="decode_image", params={"mode": "L"}),
    Step(kind="resize", params={"size": [32, 32], "resample": "bilinear"}),
    Step(kind="to_float", params={"scale": 1 / 255}),
    Step(kind="normalize", params={"mean": [0.5], "std": [0.5]}),
    Step(kind="repeat_channels", params={"channels": 3}),
]
POSTPROCESSING = [Step(kind="softmax", params={"output": "logits"}), Step(kind="top_k", params={"k": 3})]


@dataclass
class DigitSplit:
    train_images: np.ndarray  # uint8 [n, 8, 8]
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_digits_split(test_size: float = 0.2, seed: int = 0) -> DigitSplit:
    """A stratified train/held-out split of the 1,797 digits, as 8-bit greyscale images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_size, stratify=digits.target, random_state=seed
    )
    return DigitSplit(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def to_tensors(images: np.ndarray) -> np.ndarray:
    """uint8 [n, 8, 8] → FP32 [n, 3, 32, 32] through the declared pre-processing."""
    from PIL import Image

    return np.stack([preprocess(Image.fromarray(img), PREPROCESSING) for img in images])
