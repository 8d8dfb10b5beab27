import numpy as np
import pytest

from bushu.apps.vision.data import load_digits_split, to_tensors
from bushu.optimize import optimize, parse_budget, preset
from bushu.package import verify_package


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    split = load_digits_split()
    d = tmp_path_factory.mktemp("digits-data")
    np.savez(d / "eval.npz", image=to_tensors(split.test_images), labels=split.test_labels)
    np.savez(d / "cal.npz", image=to_tensors(split.train_images[:128]))
    np.savez(d / "train.npz", image=to_tensors(split.train_images), labels=split.train_labels)
    return d


def test_pruning_removes_channels_fine_tunes_and_stays_verified(vision_package, digits, tmp_path):
    config = preset("quick", families=("pruning",), rounds=3, finetune_epochs=2, budget=parse_budget("0.03"))
    result = optimize(vision_package, tmp_path / "out", config, eval_file=digits / "eval.npz",
                      calibration_file=digits / "cal.npz", train_file=digits / "train.npz")
    rows = {r.name: r for r in result.rows}
    assert result.metric.name == "accuracy"
    pruned = rows["pruned-fp32"]
    assert "50% of channels pruned" in pruned.notes and "export verified" in pruned.notes
    assert pruned.size_bytes < rows["onnx-fp32"].size_bytes * 0.6  # half the channels: well under 60% of the weights
    assert pruned.error is not None and pruned.error < 0.03  # fine-tuned back to within 3 points
    assert {"pruned-int8-static", "pruned-ov-fp32"} <= set(rows)
    verify_package(tmp_path / "out")


def test_pruning_without_training_data_is_skipped_with_the_reason(vision_package, digits, tmp_path):
    config = preset("quick", families=("pruning",), rounds=3)
    result = optimize(vision_package, tmp_path / "out", config, eval_file=digits / "eval.npz",
                      calibration_file=digits / "cal.npz")
    reasons = {s.name: s.reason for s in result.skipped}
    assert "--train" in reasons["pruned-fp32"] and not any(r.backend == "pytorch" for r in result.rows)
    assert result.choice == "onnx-fp32"
