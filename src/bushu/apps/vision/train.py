"""Train the seed CNN on the digits, evaluate it on the held-out split, and package it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bushu.apps.vision.data import LABELS, POSTPROCESSING, PREPROCESSING, DigitSplit, load_digits_split, to_tensors
from bushu.apps.vision.model import SeedCNN
from bushu.export.pack import pack_module
from bushu.export.specs import parse_input_spec
from bushu.package.manifest import Manifest

#: Called after each epoch with (epoch, epochs, mean training loss).
Progress = Callable[[int, int, float], None]


@dataclass
class TrainedVision:
    module: SeedCNN
    split: DigitSplit
    test_inputs: np.ndarray
    test_accuracy: float
    train_seconds: float


def train(epochs: int = 10, seed: int = 0, progress: Progress | None = None) -> TrainedVision:
    import torch

    torch.manual_seed(seed)
    split = load_digits_split(seed=seed)
    x_train = torch.from_numpy(to_tensors(split.train_images))
    y_train = torch.from_numpy(split.train_labels)
    x_test = to_tensors(split.test_images)
    model = SeedCNN(num_classes=len(LABELS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches_per_epoch = -(-len(x_train) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=epochs * batches_per_epoch
    )
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for batch in order.split(64):
            optimizer.zero_grad()
            images = _shift(x_train[batch], generator)
            loss = torch.nn.functional.cross_entropy(model(images), y_train[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if progress:
            progress(epoch + 1, epochs, total / len(x_train))
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        predictions = model(torch.from_numpy(x_test)).argmax(1).numpy()
    accuracy = float((predictions == split.test_labels).mean())
    return TrainedVision(model, split, x_test, accuracy, seconds)


def _shift(images, generator, pixels: int = 2):
    """Translate each batch by up to `pixels` in x and y: digits are not always centred."""
    import torch

    dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    padded = torch.nn.functional.pad(images, (pixels,) * 4, value=float(images.min()))
    h, w = images.shape[-2:]
    return padded[..., pixels + dy : pixels + dy + h, pixels + dx : pixels + dx + w]


def package(trained: TrainedVision, out: str | Path, *, force: bool = False) -> Manifest:
    return pack_module(
        trained.module,
        [parse_input_spec("image:FP32:batch,3,32,32")],
        out,
        name="digits-cnn",
        task="image-classification",
        output_names=["logits"],
        labels=LABELS,
        preprocessing=PREPROCESSING,
        postprocessing=POSTPROCESSING,
        metrics={
            "test_accuracy": trained.test_accuracy,
            "train_seconds": round(trained.train_seconds, 2),
            "train_examples": float(len(trained.split.train_labels)),
            "test_examples": float(len(trained.split.test_labels)),
        },
        source="bushu.apps.vision.model:SeedCNN",
        force=force,
    )
