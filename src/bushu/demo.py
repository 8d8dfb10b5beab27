"""`bushu demo`: the whole way for the vision app — train, package, verify, load, infer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import bushu
from bushu.package.store import verify_package
from bushu.progress import epoch_bar


def run_demo(workdir: Path, console: Console, examples: int = 8) -> None:
    from bushu.apps import vision

    workdir.mkdir(parents=True, exist_ok=True)
    package_dir = workdir / "digits-cnn"
    with epoch_bar("training the seed CNN on digits", 10) as advance:
        trained = vision.train(epochs=10, progress=advance)
    manifest = vision.package(trained, package_dir, force=True)
    variant = manifest.variants[manifest.default_variant]
    console.print(
        f"packaged {manifest.name} → {package_dir}: held-out accuracy {trained.test_accuracy:.2%}, "
        f"export error {variant.max_rel_error['logits']:.1e} ({manifest.provenance.exporter})"
    )
    verify_package(package_dir)
    console.print(f"verified: {len(manifest.files)} file(s) match their SHA-256")

    model = bushu.load(package_dir)
    batch = trained.test_inputs[:examples]
    logits = model.infer({"image": batch})["logits"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    table = Table("held-out image", "true", "predicted", "probability", title="bushu.load(...).infer")
    for i, (p, truth) in enumerate(zip(probs, trained.split.test_labels[:examples])):
        guess = int(p.argmax())
        mark = "" if guess == truth else " ✗"
        table.add_row(str(i), manifest.labels[truth], manifest.labels[guess] + mark, f"{p[guess]:.3f}")
    console.print(table)
