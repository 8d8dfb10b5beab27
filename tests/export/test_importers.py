"""Keras, SavedModel, TFLite and Caffe models: packed, verified against their own framework, served,
and tritonclient's answer equal to the source framework's on the same input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the tf extra is not installed")
pytest.importorskip("tf2onnx", reason="the tf extra is not installed")

import tritonclient.http as triton  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bushu.cli import app  # noqa: E402
from bushu.errors import ExportError, InvalidInput, PackageError  # noqa: E402
from bushu.export.importers import pack_imported  # noqa: E402
from bushu.export.pack import framework_of  # noqa: E402
from bushu.package.store import verify_package  # noqa: E402
from fixtures.servers import ThreadServer  # noqa: E402

TOLERANCE = 1e-4


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal within the export tolerance, relative to the output's scale."""
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE * max(np.abs(want).max(), 1e-6)


@pytest.fixture(scope="module")
def keras():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    return keras


@pytest.fixture(scope="module")
def sources(tmp_path_factory, keras):
    """Each source model, saved in its own format, with a function that runs it in its framework."""
    import tensorflow as tf

    from fixtures.frameworks import write_caffe_model

    root = tmp_path_factory.mktemp("sources")
    cnn = keras.Sequential([
        keras.Input((12, 12, 3), name="image"),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(5, activation="softmax", name="probs"),
    ])
    lstm = keras.Sequential([
        keras.Input((None,), dtype="int32", name="ids"),
        keras.layers.Embedding(40, 8),
        keras.layers.LSTM(12),
        keras.layers.Dense(3, name="logits"),
    ])
    cnn.save(root / "cnn.keras")
    cnn.save(root / "cnn_legacy.h5")
    lstm.save(root / "lstm.keras")
    tf.saved_model.save(cnn, str(root / "cnn_savedmodel"))
    tflite = tf.lite.TFLiteConverter.from_keras_model(cnn).convert()
    (root / "cnn.tflite").write_bytes(tflite)
    prototxt, caffemodel = write_caffe_model(root, np.random.default_rng(0))
    return {"root": root, "cnn": cnn, "lstm": lstm, "prototxt": prototxt, "caffemodel": caffemodel}


def test_the_path_says_which_framework(sources):
    root = sources["root"]
    assert framework_of(root / "cnn.keras") == "keras"
    assert framework_of(root / "cnn_legacy.h5") == "keras"
    assert framework_of(root / "cnn_savedmodel") == "tensorflow"
    assert framework_of(root / "cnn.tflite") == "tflite"
    assert framework_of(sources["prototxt"]) == "caffe"
    assert framework_of(root) is None


def _tflite_run(path: Path, x: np.ndarray) -> np.ndarray:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated"
        interpreter = tf.lite.Interpreter(model_path=str(path))
    rows = []
    for row in x:  # the file was made for one example at a time
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return np.concatenate(rows)


def _caffe_run(prototxt: Path, caffemodel: Path, x: np.ndarray) -> np.ndarray:
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(x, "data")
    return net.forward("prob")


CASES = {
    # name: (source path key, framework, input name, input shape, output name)
    "keras-cnn": ("cnn.keras", "keras", "image", (4, 12, 12, 3), "probs"),
    "keras-h5": ("cnn_legacy.h5", "keras", "image", (2, 12, 12, 3), "probs"),
    "keras-lstm": ("lstm.keras", "keras", "ids", (3, 9), "logits"),
    "savedmodel": ("cnn_savedmodel", "tensorflow", "inputs", (4, 12, 12, 3), "output_0"),
    "tflite": ("cnn.tflite", "tflite", None, (3, 12, 12, 3), None),
    "caffe": ("deploy.prototxt", "caffe", "data", (3, 3, 16, 16), "prob"),
}


@pytest.fixture(scope="module")
def packages(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("repo")
    made = {}
    for case, (rel, framework, *_rest) in CASES.items():
        made[case] = pack_imported(sources["root"] / rel, out / case, name=case)
    return out, made


def _want(case: str, sources, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    root = sources["root"]
    if case in ("keras-cnn", "keras-h5"):
        return np.asarray(sources["cnn"](x, training=False))
    if case == "keras-lstm":
        return np.asarray(sources["lstm"](x, training=False))
    if case == "savedmodel":
        signature = tf.saved_model.load(str(root / "cnn_savedmodel")).signatures["serving_default"]
        return signature(inputs=tf.constant(x))["output_0"].numpy()
    if case == "tflite":
        return _tflite_run(root / "cnn.tflite", x)
    return _caffe_run(sources["prototxt"], sources["caffemodel"], x)


def test_manifests_record_framework_converter_error_and_axes(packages):
    out, made = packages
    for case, (_, framework, input_name, shape, output_name) in CASES.items():
        manifest = made[case]
        verify_package(out / case)
        assert manifest.framework == framework
        assert manifest.provenance.framework_version and manifest.provenance.exporter
        errors = manifest.variants[manifest.default_variant].max_rel_error
        assert errors and all(0 <= e <= TOLERANCE for e in errors.values()), (case, errors)
        spec = manifest.inputs[0]
        assert spec.shape[0] == -1 and spec.dims[0] == "batch", (case, spec)  # batchable
        assert manifest.outputs[0].shape[0] == -1
        if input_name:
            assert spec.name == input_name and list(errors) == [output_name]
    # layouts stay as the source states them: Keras NHWC, Caffe NCHW
    assert made["keras-cnn"].inputs[0].shape == [-1, 12, 12, 3]
    assert made["caffe"].inputs[0].shape == [-1, 3, 16, 16]
    # the LSTM's sequence axis stays dynamic
    assert made["keras-lstm"].inputs[0].shape == [-1, -1] and made["keras-lstm"].inputs[0].datatype == "INT32"
    # TFLite and Caffe files fix the batch at 1: the importer made it dynamic and says so
    assert "batch axis made dynamic" in made["caffe"].variants["onnx-fp32"].notes


def test_tritonclient_answers_what_the_source_framework_computes(packages, sources):
    out, made = packages
    rng = np.random.default_rng(7)
    with ThreadServer([out / case for case in CASES]) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            for case, (_, _, _, shape, _) in CASES.items():
                manifest = made[case]
                spec, output = manifest.inputs[0], manifest.outputs[0].name
                if spec.datatype == "INT32":
                    x = rng.integers(0, 40, size=shape).astype(np.int32)
                else:
                    x = rng.standard_normal(shape).astype(np.float32)
                tensor = triton.InferInput(spec.name, list(x.shape), spec.datatype)
                tensor.set_data_from_numpy(x, binary_data=True)
                result = client.infer(case, [tensor], outputs=[triton.InferRequestedOutput(output, binary_data=True)])
                _close(result.as_numpy(output), _want(case, sources, x))
        finally:
            client.close()


def test_cli_packs_a_caffe_model_and_inspect_names_the_framework(sources, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["pack", str(sources["prototxt"]), "-o", str(tmp_path / "c"), "--name", "tiny-caffe"])
    assert result.exit_code == 0, result.output
    assert "verified: prob" in " ".join(result.output.split())  # the console may wrap a long path
    shown = runner.invoke(app, ["inspect", str(tmp_path / "c")])
    said = " ".join(shown.output.split())
    assert "framework=caffe" in said and "opencv 4." in said
    manifest = json.loads((tmp_path / "c" / "bushu.json").read_text())
    assert manifest["provenance"]["exporter"] == "caffe2onnx"


def test_input_specs_are_refused_for_a_framework_that_states_its_own(sources, tmp_path):
    result = CliRunner().invoke(app, ["pack", str(sources["root"] / "cnn.keras"), "-o", str(tmp_path / "k"),
                                      "--input", "x:FP32:1,2"])
    assert result.exit_code != 0
    assert "states its own inputs" in " ".join(result.output.split())
    assert not (tmp_path / "k").exists()


def test_a_model_no_converter_reproduces_is_refused_naming_each_converter(sources, tmp_path):
    from bushu.export.convert import Converter, convert_verified
    from bushu.export.keras_tf import keras_source

    source, _ = keras_source(sources["root"] / "cnn.keras")
    wrong = sources["root"] / "wrong.keras"
    sources["lstm"].save(wrong)  # a converter that writes some other model

    def other(target: Path) -> None:
        _, (keras_export, _) = keras_source(wrong)
        keras_export.convert(target)

    with pytest.raises(ExportError) as info:
        convert_verified(source, [Converter("other", other), Converter("broken", _raise)], tmp_path / "m.onnx")
    message = str(info.value)
    assert "no converter reproduced the keras model" in message
    assert "other: the converted model fails at inputs image=" in message
    assert "broken: conversion failed: RuntimeError: converter exploded" in message
    assert not (tmp_path / "m.onnx").exists()


def _raise(target: Path) -> None:
    raise RuntimeError("converter exploded")


def test_bad_files_answer_clearly(tmp_path, sources):
    fake = tmp_path / "broken.keras"
    fake.write_bytes(b"not a zip")
    with pytest.raises(PackageError, match="Keras cannot load it"):
        pack_imported(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes((sources["root"] / "cnn.tflite").read_bytes()[:200])
    with pytest.raises(PackageError, match="TFLite interpreter cannot load it"):
        pack_imported(truncated, tmp_path / "out2")
    lonely = tmp_path / "lonely" / "deploy.prototxt"
    lonely.parent.mkdir()
    lonely.write_text((sources["prototxt"]).read_text())
    with pytest.raises(InvalidInput, match="needs its weights"):
        pack_imported(lonely, tmp_path / "out3")
