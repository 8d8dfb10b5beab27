import io

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_model
from typer.testing import CliRunner

from bushu.apps.vision import SeedCNN
from bushu.apps.vision.data import PREPROCESSING, load_digits_split, to_tensors
from bushu.cli import app
from bushu.export.compare import relative_error
from bushu.package import read_manifest
from bushu.runtime.processing import preprocess


def test_seed_cnn_reaches_97_percent_on_held_out_digits(vision_package):
    # Its training time is reported in the manifest and measured outside the tests (timed tests
    # on a shared machine measure the neighbours).
    manifest = read_manifest(vision_package)
    assert manifest.metrics["test_accuracy"] >= 0.97
    assert manifest.metrics["train_seconds"] > 0
    assert manifest.metrics["test_examples"] == 360  # a fifth of 1,797, stratified
    assert manifest.labels == [str(d) for d in range(10)]
    (image,) = manifest.inputs
    assert (image.name, image.datatype, image.shape) == ("image", "FP32", [-1, 3, 32, 32])
    (logits,) = manifest.outputs
    assert (logits.name, logits.datatype, logits.shape) == ("logits", "FP32", [-1, 10])
    assert [s.kind for s in manifest.preprocessing][0] == "decode_image"


def test_bushu_infer_returns_the_trained_modules_logits(vision_package, tmp_path):
    manifest = read_manifest(vision_package)
    module = SeedCNN()
    load_model(module, str(vision_package / manifest.provenance.weights_file))
    images = to_tensors(load_digits_split().test_images)
    np.save(tmp_path / "images.npy", images)

    result = CliRunner().invoke(app, ["infer", str(vision_package), "--input", f"image={tmp_path / 'images.npy'}",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    served = np.load(tmp_path / "out" / "logits.npy")
    with torch.no_grad():
        trained = module.eval()(torch.from_numpy(images)).numpy()
    assert served.shape == (360, 10)
    assert relative_error(served, trained) < 1e-5
    accuracy = (served.argmax(1) == load_digits_split().test_labels).mean()
    assert accuracy == read_manifest(vision_package).metrics["test_accuracy"]


def test_a_png_of_a_digit_meets_the_same_tensor_as_training():
    digit = load_digits_split().test_images[0]
    png = io.BytesIO()
    Image.fromarray(digit).save(png, format="PNG")
    from_png = preprocess(png.getvalue(), PREPROCESSING)
    np.testing.assert_array_equal(from_png, to_tensors(digit[None])[0])
    assert from_png.shape == (3, 32, 32)
