import numpy as np
import pytest
from typer.testing import CliRunner

from bushu.cli import app
from bushu.package import read_manifest


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def files(tmp_path, rng):
    x = rng.standard_normal((120, 6)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x[:80])
    np.savez(tmp_path / "cal.npz", x=x[80:])
    np.savez(tmp_path / "same.npz", x=x[:80])
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    (["--budget", "lots"], "expected a percentage like '1%'"),
    (["--metric", "f1"], "unknown metric 'f1'"),
    (["--target", "tpu"], "choose cpu or cuda"),
    (["--families", "openvino,warp-drive"], "unknown variant families ['warp-drive']"),
    (["--families", "ort-cuda"], "['ort-cuda'] do not run on target 'cpu'"),
    (["--calibration", "same.npz"], "calibration and eval must be different samples"),
    (["--calibration", "absent.npz"], "no such file"),
    (["--confirm", "same.npz"], "confirmation and eval must be different samples"),
    (["--calibration", "cal.npz", "--held-out", "cal.npz"], "held-out and eval must be different samples"),
])
def test_bad_arguments_fail_clearly_and_write_nothing(tiny_package, files, args, message):
    args = [str(files / a) if a.endswith(".npz") else a for a in args]
    result = run("optimize", tiny_package, "-o", files / "out", "--eval", files / "eval.npz", *args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not (files / "out").exists()


def test_optimize_then_compare_the_source_with_the_result(tiny_package, files):
    result = run("optimize", tiny_package, "-o", files / "out", "--eval", files / "eval.npz",
                 "--calibration", files / "cal.npz", "--preset", "quick", "--batch", "16", "--budget", "0.01")
    assert result.exit_code == 0, result.output
    choice = read_manifest(files / "out").default_variant
    assert f"chose {choice}" in " ".join(result.output.split())
    compared = run("compare", tiny_package, files / "out", "--eval", files / "eval.npz", "--batch", "16")
    assert compared.exit_code == 0, compared.output
    assert "tiny:tiny" in compared.output and "tiny:out" in compared.output and "best: tiny:" in compared.output
    strict = run("compare", tiny_package, "--eval", files / "eval.npz", "--goal", "accuracy", "--max-latency-ms", "0.000001")
    assert strict.exit_code == 1 and "no package has a p95 latency" in strict.output


def test_sigterm_during_optimize_leaves_no_staging_folder_and_no_output(tiny_package, files):
    import signal
    import subprocess
    import sys
    import time

    out = files / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bushu.cli", "optimize", str(tiny_package), "-o", str(out),
                             "--eval", str(files / "eval.npz"), "--preset", "thorough"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(files.glob(".out.*")):  # the search is under way once its staging folder exists
            assert proc.poll() is None and time.monotonic() < deadline, "optimize ended before it staged anything"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # 143 as a rule; a signal that lands inside a C extension's import surfaces as that import's error
        assert proc.wait(60) != 0
    finally:
        proc.kill()
    assert not list(files.glob(".out.*")) and not out.exists()


def test_the_ort_quantiser_does_not_configure_the_root_logger_of_a_library_user(tiny_package, files):
    """ORT's quantiser calls logging.warning ("Please consider to run pre-processing..."), which, with
    no logging set up, configures the root logger and prints; used as a library (a fresh interpreter,
    no pytest or CLI handlers), bushu's passes must leave the terminal and the root logger alone."""
    import subprocess
    import sys

    script = (
        "import logging\n"
        "from onnxruntime.quantization import quantize_dynamic\n"
        "from bushu.optimize.passes.ort import quiet_root_logger\n"
        "with quiet_root_logger():\n"
        f"    quantize_dynamic({str(tiny_package / 'model.onnx')!r}, {str(files / 'q.onnx')!r})\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
        f"quantize_dynamic({str(tiny_package / 'model.onnx')!r}, {str(files / 'q2.onnx')!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # only the second, unguarded call printed: the noise exists, so its absence the first time means something
    assert done.stderr.count("pre-processing before quantization") == 1, done.stderr
    assert (files / "q.onnx").stat().st_size > 0
