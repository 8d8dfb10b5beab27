"""The distill family: narrower students of the source's class, trained on its outputs alone.

Students here are tiny and trained for few steps, so the bars are loose; what they check could
still fail: a student that learnt nothing agrees with its teacher on about a tenth of the digits.
"""

import numpy as np
import pytest

import bushu
from bushu.apps.vision.data import load_digits_split, to_tensors
from bushu.errors import InvalidInput
from bushu.optimize import optimize, parse_budget, preset
from bushu.optimize.samples import load_samples
from bushu.package import read_manifest


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Held-out images for judging, and unlabelled training images for the student to learn from."""
    split = load_digits_split()
    d = tmp_path_factory.mktemp("distill-data")
    np.savez(d / "eval.npz", image=to_tensors(split.test_images), labels=split.test_labels)
    np.savez(d / "cal.npz", image=to_tensors(split.train_images[:128]))
    np.savez(d / "train.npz", image=to_tensors(split.train_images[128:]))  # no labels: none are needed
    return d


@pytest.fixture(scope="module")
def distilled(vision_package, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("distilled") / "out"
    config = preset("quick", families=("distill", "pytorch"), rounds=3, distill_scales=(0.25,), distill_steps=150,
                    budget=parse_budget("0.2"), metric="top1_agreement")
    result = optimize(vision_package, out, config, eval_file=digits / "eval.npz",
                      calibration_file=digits / "cal.npz", train_file=digits / "train.npz")
    return result, out


def test_the_student_is_narrower_and_agrees_with_its_teacher_on_held_out_images(distilled):
    result, _ = distilled
    rows = {r.name: r for r in result.rows}
    student = rows["distill-25"]
    assert "SeedCNN(conv1=8, conv2=16, hidden=128)" in student.notes
    assert "strongest channels (torch-pruning)" in student.notes and "export verified" in student.notes
    assert student.size_bytes < rows["onnx-fp32"].size_bytes / 10  # a quarter of each width: ~1/16 of fc1
    # top-1 agreement with the teacher on the 360 held-out digits, which the student never saw
    assert student.metric_value is not None and student.metric_value >= 0.9
    assert {"distill-25-ov-fp32", "distill-25-int8-static", "distill-25-ov-int8-qdq"} <= set(rows)


def test_the_student_is_data_the_pytorch_backend_rebuilds_from_the_package_class(distilled):
    """The PyTorch variant of the student is the package's class, these constructor arguments and a
    safetensors file; the search loaded it through the PyTorch backend to score it, so its score
    equals the ONNX student's only if that data rebuilt the same model."""
    result, _ = distilled
    rows = {r.name: r for r in result.rows}
    onnx, torch_student = rows["distill-25"], rows["distill-25-torch-fp32"]
    assert torch_student.backend == "pytorch" and torch_student.file.endswith(".safetensors")
    assert torch_student.options["kwargs"] == {"num_classes": 10, "conv1": 8, "conv2": 16, "hidden": 128, "stride": 1}
    assert torch_student.metric_value is not None and not torch_student.reason.startswith("failed")
    assert torch_student.metric_value == pytest.approx(onnx.metric_value, abs=1 / 360)  # at most one digit apart


def test_a_class_that_declares_a_cheaper_form_gets_a_second_student_in_it(distilled):
    """SeedCNN declares CHEAPER = {"stride": 2}: each scale also has a student that reads the image at
    half the resolution, so its first dense layer is a quarter of the narrow student's; it is judged
    like the others (the digits are 8×8 scaled up to 32×32, so it loses little here)."""
    result, _ = distilled
    rows = {r.name: r for r in result.rows}
    strided, narrow = rows["distill-25-stride2"], rows["distill-25"]
    assert "SeedCNN(conv1=8, conv2=16, hidden=128, stride=2)" in strided.notes
    assert "strongest channels (torch-pruning) where shapes allow" in strided.notes
    assert strided.size_bytes < narrow.size_bytes / 2
    assert strided.metric_value is not None and strided.metric_value >= 0.9
    assert rows["distill-25-stride2-torch-fp32"].options["kwargs"]["stride"] == 2
    assert {"distill-25-stride2-ov-fp32", "distill-25-stride2-ov-int8-qdq"} <= set(rows)


def test_a_stride_that_does_not_divide_the_pooled_grid_is_refused():
    from bushu.apps.vision import SeedCNN

    with pytest.raises(ValueError, match="stride 3: .*must divide 8"):
        SeedCNN(stride=3)


def test_a_class_without_widths_is_skipped_with_the_reason(rng, tmp_path):
    import torch
    from fixtures.tiny import TinyMLP

    from bushu.export import pack_module, parse_input_spec

    torch.manual_seed(0)
    pack_module(TinyMLP(), [parse_input_spec("x:FP32:batch,6")], tmp_path / "tiny", name="tiny", labels=["a", "b", "c"],
                source="fixtures.tiny:TinyMLP")
    np.savez(tmp_path / "eval.npz", x=rng.standard_normal((64, 6)).astype(np.float32))
    config = preset("quick", families=("distill",), rounds=3, distill_steps=5)
    result = optimize(tmp_path / "tiny", tmp_path / "out", config, eval_file=tmp_path / "eval.npz")
    reasons = {s.name: s.reason for s in result.skipped}
    assert "declares no WIDTHS" in reasons["distill-25"]
    assert result.choice == "onnx-fp32"


@pytest.mark.parametrize("scales", [(0.0,), (1.0,), (0.5, 1.5)])
def test_scales_outside_zero_to_one_are_refused(scales):
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        preset("quick", distill_scales=scales)


@pytest.mark.slow  # the trained LSTM fixture plus a student: minutes on a shared 2-core machine
def test_an_lstm_student_learns_from_unlabelled_texts_alone(text_package, tmp_path):
    """torch-pruning leaves recurrent layers alone: this student starts fresh but for the word
    embeddings, projected onto the teacher's principal directions, and learns from the teacher."""
    from bushu.apps.text.data import load_split

    split = load_split()
    one_line = [" ".join(t.split()) for t in split.test_texts[:400]]  # a .txt holds one text per line
    judged = set(one_line)
    rest = [t for t in dict.fromkeys(" ".join(t.split()) for t in split.train_texts[:3000]) if t not in judged]
    (tmp_path / "eval.txt").write_text("\n".join(one_line) + "\n")
    (tmp_path / "cal.txt").write_text("\n".join(rest[:128]) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(rest[128:]) + "\n")
    config = preset("quick", families=("distill",), rounds=3, distill_scales=(0.25,), distill_steps=300,
                    budget=parse_budget("0.5"), metric="top1_agreement")
    result = optimize(text_package, tmp_path / "out", config, eval_file=tmp_path / "eval.txt",
                      calibration_file=tmp_path / "cal.txt", train_file=tmp_path / "train.txt")
    rows = {r.name: r for r in result.rows}
    student = rows["distill-25"]
    assert "LSTMClassifier(embed_dim=32, hidden=16)" in student.notes
    assert "tensors where shapes allow" in student.notes and "mixtures" not in student.notes  # ids are not mixed
    assert student.size_bytes < rows["onnx-fp32"].size_bytes / 2
    forward_only = rows["distill-25-directions1"]  # LSTMClassifier.CHEAPER: no backward reader
    assert "LSTMClassifier(embed_dim=32, hidden=16, directions=1)" in forward_only.notes
    assert forward_only.size_bytes < student.size_bytes
    # a student that learnt nothing but the teacher's commonest answer agrees on that answer's share
    teacher = bushu.load(text_package, threads=1)
    samples = load_samples(tmp_path / "eval.txt", read_manifest(text_package), text_package)
    answers = teacher.infer(samples.inputs)["logits"].argmax(1)
    constant = np.bincount(answers).max() / len(answers)
    assert student.metric_value is not None and student.metric_value >= constant + 0.15
    assert forward_only.metric_value is not None and forward_only.metric_value >= constant + 0.15
