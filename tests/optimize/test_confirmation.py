"""Select, then confirm, on the real seed CNN and real digits.

A narrow eval set (one digit only) also makes a narrow calibration set: static int8 ranges
calibrated on it clip what other digits produce, yet agree perfectly on more of the same digit.
Selection (more of that digit) picks such a variant; confirmation (every other digit) rejects
it, and the search falls back to the next-fastest variant that holds on both, and says so.
"""

import json

import numpy as np
import pytest

from bushu.apps.vision.data import load_digits_split, to_tensors
from bushu.optimize import optimize, parse_budget, preset
from bushu.package import verify_package
from fixtures.hardware import needs_int8


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    split = load_digits_split()
    d = tmp_path_factory.mktemp("narrow-digits")
    ones = np.concatenate([split.train_images[split.train_labels == 1], split.test_images[split.test_labels == 1]])
    np.savez(d / "ones.npz", image=to_tensors(ones))  # one digit: calibration and selection come from here
    others = split.test_images[split.test_labels != 1]
    np.savez(d / "others.npz", image=to_tensors(others))  # every other digit: the confirmation file
    return d


@needs_int8
def test_a_narrow_eval_set_picks_a_variant_that_fails_confirmation_and_the_search_falls_back(
        vision_package, narrow, tmp_path):
    # relative error of the logits: 0.05 for int8 on more ones, 0.33 on the other digits
    config = preset("quick", families=("ort-static", "openvino"), rounds=5, metric="relative_error",
                    budget=parse_budget("0.1"))
    log: list[str] = []
    result = optimize(vision_package, tmp_path / "out", config, eval_file=narrow / "ones.npz",
                      confirm_file=narrow / "others.npz", log=log.append)
    rows = {r.name: r for r in result.rows}
    failed = [r for r in result.rows if r.reason.startswith("failed confirmation")]
    assert failed, {r.name: (r.error, r.confirm_error, r.reason) for r in result.rows}
    for row in failed:  # held on the narrow selection part, broke on the other digits
        assert row.error <= result.allowed_error < row.confirm_error and not row.kept
    chosen = rows[result.choice]
    assert chosen.confirm_error <= result.confirm_allowed_error and chosen.error <= result.allowed_error
    fastest_failed = max(failed, key=lambda r: r.timing.throughput)
    assert fastest_failed.timing.throughput > chosen.timing.throughput
    assert f"{fastest_failed.name}, the fastest on selection" in result.why and "fell back" in result.why
    assert chosen.interval is not None and chosen.interval[0] <= chosen.interval[1]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "fell back" in report["why"] and report["confirmation"]["source"].endswith("others.npz")
    assert "fell back" in (tmp_path / "out" / "report.md").read_text()
    assert any(w.startswith("selection: narrow data") for w in result.warnings), result.warnings
    assert not any(w.startswith("confirmation: narrow data") for w in result.warnings), result.warnings
    manifest = verify_package(tmp_path / "out")
    assert manifest.default_variant == result.choice and not {r.name for r in failed} & set(manifest.variants)
