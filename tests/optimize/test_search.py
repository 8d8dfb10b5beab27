import json

import numpy as np
import pytest

import bushu
from bushu.errors import InvalidInput, PackageError
from bushu.optimize import optimize, parse_budget, preset
from bushu.optimize.measure import Timing
from bushu.optimize.search import Row, decide
from bushu.package import hash_files, read_manifest, verify_package
from fixtures.hardware import needs_int8


@pytest.fixture
def data(tmp_path, rng):
    x = rng.standard_normal((300, 6)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x[:200])
    np.savez(tmp_path / "cal.npz", x=x[200:])
    return tmp_path


@pytest.fixture(scope="module")
def quick():
    return preset("quick", families=("ort-dynamic", "ort-static", "openvino", "nncf"), rounds=3, serving_batch=16)


@needs_int8
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


def _row(name, error, per_s, confirm_error=None):
    row = Row(name, "f", "onnxruntime", "fp32", f"{name}.onnx", 1, "")
    row.error, row.timing = error, Timing(1, 1, 64_000 / per_s, 64_000 / per_s, 64)
    row.confirm_error = error if confirm_error is None else confirm_error
    return row


def test_the_fastest_in_budget_wins_never_a_slower_one_nor_one_over_budget():
    rows = [_row("base", 0.0, 100), _row("fast-bad", 0.05, 400), _row("fast-ok", 0.004, 300), _row("ok", 0.001, 200)]
    choice, why = decide(rows, rows[0], allowed=0.01)
    assert choice == "fast-ok" and "3.00×" in why and "fell back" not in why
    assert "over budget" in rows[1].reason and not rows[1].kept and rows[3].kept

    rows = [_row("base", 0.0, 100), _row("slow-ok", 0.0, 90), _row("bad", 0.5, 500)]
    choice, why = decide(rows, rows[0], allowed=0.01)
    assert choice == "base" and "no variant beat the fp32 baseline" in why
    assert "slower than the fp32 baseline" in rows[1].reason

    rows = [_row("base", 0.0, 100), _row("bad", 0.5, 500)]
    assert decide(rows, rows[0], allowed=0.01) == ("base", "no variant stayed within the budget; keeping the baseline")


def test_the_fastest_on_selection_must_hold_on_confirmation_else_the_next_fastest_is_chosen():
    rows = [_row("base", 0.0, 100), _row("fastest", 0.004, 400, confirm_error=0.03), _row("next", 0.006, 300),
            _row("slowest", 0.001, 200, confirm_error=0.02)]
    choice, why = decide(rows, rows[0], allowed=0.01)
    assert choice == "next" and "fastest, the fastest on selection (4.00×" in why and "fell back" in why
    assert not rows[1].kept and rows[1].reason.startswith("failed confirmation: error 0.03 > allowed 0.01")
    assert not rows[3].kept and "failed confirmation" in rows[3].reason  # kept variants hold on both
    assert rows[2].kept and rows[2].reason.startswith("chosen")

    rows = [_row("base", 0.0, 100), _row("only", 0.0, 400, confirm_error=0.5)]
    choice, why = decide(rows, rows[0], allowed=0.01)
    assert choice == "base" and why.startswith("no variant stayed within the budget on both") and "fell back" in why


def test_optimized_manifest_round_trips(tiny_package, data, quick):
    out = data / "opt2"
    optimize(tiny_package, out, quick.model_copy(update={"families": ("openvino",)}), eval_file=data / "eval.npz")
    manifest = read_manifest(out)
    assert manifest.default_variant in manifest.variants
    report = json.loads((out / "report.json").read_text())
    assert report["splits"][0].startswith("no --calibration file: 64 random eval samples were held out")  # quick: 64
    assert report["eval"]["samples"] == 68 and report["confirmation"]["samples"] == 68


@pytest.fixture(scope="module")
def sourced_package(tmp_path_factory):
    """TinyMLP with its class and constructor arguments recorded, so PyTorch can rebuild it."""
    import torch

    from bushu.export import pack_module, parse_input_spec
    from fixtures.tiny import TinyMLP

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("sourced") / "tiny"
    pack_module(TinyMLP(features=6, classes=3), [parse_input_spec("x:FP32:batch,6")], out, name="tiny",
                source="fixtures.tiny:TinyMLP", source_kwargs={"features": 6, "classes": 3})
    return out


def test_pytorch_variants_are_built_measured_and_kept_with_their_settings(sourced_package, data, quick):
    out = data / "opt-torch"
    config = quick.model_copy(update={"families": ("pytorch",), "budget": parse_budget("0.001")})
    result = optimize(sourced_package, out, config, eval_file=data / "eval.npz", calibration_file=data / "cal.npz")
    rows = {r.name: r for r in result.rows}
    assert result.baseline == "onnx-fp32" and "torch-fp32" in rows
    assert rows["torch-fp32"].backend == "pytorch" and rows["torch-fp32"].error == pytest.approx(0, abs=1e-6)
    skipped = {s.name: s.reason for s in result.skipped}
    assert "fp16" in skipped["torch-fp16"] and "--target cuda" in skipped["torch-fp16"]
    manifest = verify_package(out)
    x = np.load(data / "eval.npz")["x"][:5]
    want = bushu.load(sourced_package).infer({"x": x})["output"]
    for name, variant in manifest.variants.items():
        if variant.backend == "pytorch":  # no new file: the package's own weights, run by PyTorch
            assert variant.file == manifest.provenance.weights_file and variant.device == "cpu"
            got = bushu.load(out, name).infer({"x": x})["output"]
            assert np.allclose(got, want, rtol=1e-4, atol=1e-5)
    assert rows["torch-fp32"].kept == ("torch-fp32" in manifest.variants)


def test_a_package_without_a_pytorch_source_skips_pytorch_and_says_why(tiny_package, data, quick):
    config = quick.model_copy(update={"families": ("pytorch", "openvino")})
    result = optimize(tiny_package, data / "opt-nosource", config, eval_file=data / "eval.npz")
    reasons = [s.reason for s in result.skipped if s.family == "pytorch"]
    assert reasons and "no PyTorch source" in reasons[0]
    assert not any(r.backend == "pytorch" for r in result.rows)


def test_target_cuda_without_a_gpu_fails_before_writing(sourced_package, data):
    from bushu.optimize.hardware import probe

    if probe().cuda is not None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(InvalidInput, match="no CUDA device"):
        optimize(sourced_package, data / "opt-cuda", preset("quick", target="cuda"), eval_file=data / "eval.npz")
    assert not (data / "opt-cuda").exists()


def test_the_gpu_baseline_is_fp32_on_the_gpu_or_the_search_says_why_there_is_none():
    from bushu.optimize.passes import Candidate, Skipped
    from bushu.optimize.search import _gpu_baseline

    torch_fp32 = Candidate("torch-fp32", "pytorch", "pytorch", "fp32", "w.safetensors", device="cuda")
    ort_cuda = Candidate("ort-cuda-fp32", "ort-cuda", "onnxruntime", "fp32", "model.onnx", device="cuda")
    bf16 = Candidate("torch-bf16", "pytorch", "pytorch", "bf16", "w.safetensors", device="cuda")
    assert _gpu_baseline([bf16, ort_cuda, torch_fp32], []) is torch_fp32
    assert _gpu_baseline([bf16, ort_cuda], []) is ort_cuda
    with pytest.raises(InvalidInput, match="ort-cuda-fp32: this onnxruntime has no CUDAExecutionProvider"):
        _gpu_baseline([bf16], [Skipped("ort-cuda-fp32", "ort-cuda", "this onnxruntime has no CUDAExecutionProvider")])


def test_ort_gpu_providers_are_offered_only_where_installed(tiny_package):
    import onnxruntime as ort

    from bushu.optimize.passes import BuildContext, Candidate
    from bushu.optimize.passes.ort import gpu

    ctx = BuildContext(tiny_package, read_manifest(tiny_package), "model.onnx", preset("default", target="cuda"),
                       None, None, None, False, None, None, 0.01, print)  # type: ignore[arg-type]
    available = ort.get_available_providers()
    for outcome in gpu(ctx):
        provider = "TensorrtExecutionProvider" if "tensorrt" in outcome.name else "CUDAExecutionProvider"
        assert isinstance(outcome, Candidate) == (provider in available), outcome
        if not isinstance(outcome, Candidate):
            assert f"no {provider}" in outcome.reason


def test_a_baseline_that_could_not_run_is_an_error_not_a_choice():
    from bushu.errors import BushuError

    broken = Row("torch-fp32", "pytorch", "pytorch", "fp32", "w.safetensors", 1, "", device="cuda")
    broken.reason = "failed to run: RuntimeError: CUDA out of memory"
    with pytest.raises(BushuError, match="torch-fp32 could not be measured: failed to run: RuntimeError: CUDA out"):
        decide([broken, _row("ok", 0.0, 100)], broken, allowed=0.01)
