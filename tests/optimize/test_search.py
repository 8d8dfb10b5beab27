import json

import numpy as np
import pytest

import bushu
from bushu.errors import InvalidInput, PackageError
from bushu.optimize import optimize, preset
from bushu.optimize.measure import Timing
from bushu.optimize.search import Row, decide
from bushu.package import hash_files, read_manifest, verify_package


@pytest.fixture
def data(tmp_path, rng):
    x = rng.standard_normal((300, 6)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x[:200])
    np.savez(tmp_path / "cal.npz", x=x[200:])
    return tmp_path


@pytest.fixture(scope="module")
def quick():
    return preset("quick", families=("ort-dynamic", "ort-static", "openvino", "nncf"), rounds=3, serving_batch=16)


def test_optimize_writes_a_new_verified_package_and_leaves_the_source_alone(tiny_package, data, quick):
    before = hash_files(tiny_package)
    out = data / "opt"
    result = optimize(tiny_package, out, quick, eval_file=data / "eval.npz", calibration_file=data / "cal.npz")
    assert hash_files(tiny_package) == before
    manifest = verify_package(out)
    assert manifest.default_variant == result.choice and result.choice in manifest.variants
    names = {r.name for r in result.rows}
    assert {"onnx-fp32", "ort-int8-dynamic", "ort-int8-static-minmax", "ov-fp32", "ov-int8-nncf"} <= names
    for row in result.rows:  # every variant measured and judged, with a reason
        assert row.reason and row.timing is not None and row.error is not None, row
        assert (row.name in manifest.variants) == row.kept
    for name, variant in manifest.variants.items():
        assert variant.file in manifest.files and "throughput_per_s" in variant.metrics, name
    chosen = next(r for r in result.rows if r.name == result.choice)
    baseline = result.rows[0]
    assert chosen.error <= result.allowed_error and chosen.timing.throughput >= baseline.timing.throughput
    report = json.loads((out / "report.json").read_text())
    assert report["choice"] == result.choice and report["metric"]["name"] == "top1_agreement"
    assert len(report["variants"]) == len(result.rows)
    assert "| ov-int8-nncf |" in (out / "report.md").read_text().replace(" **(chosen)**", "")
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "optimize.json").read_text())["rounds"] == 3
    x = np.load(data / "eval.npz")["x"][:4]
    for name in manifest.variants:  # every kept variant runs from the new package
        assert bushu.load(out, name).infer({"x": x})["output"].shape == (4, 3)


def test_overlapping_calibration_is_refused_and_nothing_is_written(tiny_package, data, quick):
    np.savez(data / "bad.npz", x=np.load(data / "eval.npz")["x"][:10])
    with pytest.raises(InvalidInput, match="must be different samples"):
        optimize(tiny_package, data / "opt", quick, eval_file=data / "eval.npz", calibration_file=data / "bad.npz")
    assert not (data / "opt").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".opt")]


def test_the_source_is_never_the_output(tiny_package, data, quick):
    with pytest.raises((InvalidInput, PackageError)):
        optimize(tiny_package, tiny_package, quick, eval_file=data / "eval.npz", force=True)
    verify_package(tiny_package)


def _row(name, error, per_s):
    row = Row(name, "f", "onnxruntime", "fp32", f"{name}.onnx", 1, "")
    row.error, row.timing = error, Timing(1, 1, 64_000 / per_s, 64_000 / per_s, 64)
    return row


def test_the_fastest_in_budget_wins_never_a_slower_one_nor_one_over_budget():
    rows = [_row("base", 0.0, 100), _row("fast-bad", 0.05, 400), _row("fast-ok", 0.004, 300), _row("ok", 0.001, 200)]
    choice, why = decide(rows, rows[0], allowed=0.01)
    assert choice == "fast-ok" and "3.00×" in why
    assert "over budget" in rows[1].reason and not rows[1].kept and rows[3].kept

    rows = [_row("base", 0.0, 100), _row("slow-ok", 0.0, 90), _row("bad", 0.5, 500)]
    choice, why = decide(rows, rows[0], allowed=0.01)
    assert choice == "base" and "no variant beat the fp32 baseline" in why
    assert "slower than the fp32 baseline" in rows[1].reason

    rows = [_row("base", 0.0, 100), _row("bad", 0.5, 500)]
    assert decide(rows, rows[0], allowed=0.01) == ("base", "no variant stayed within the budget; keeping the baseline")


def test_optimized_manifest_round_trips(tiny_package, data, quick):
    out = data / "opt2"
    optimize(tiny_package, out, quick.model_copy(update={"families": ("openvino",)}), eval_file=data / "eval.npz")
    manifest = read_manifest(out)
    assert manifest.default_variant in manifest.variants
    assert json.loads((out / "report.json").read_text())["notes"][0].startswith("no --calibration file")
