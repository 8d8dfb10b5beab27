"""Compressed generation variants (`bushu optimize` on a generation package): NNCF's weight-only
int8/int4 decode steps, scored on perplexity or greedy agreement, timed through the engine."""

import math
import re

import pytest
from typer.testing import CliRunner

from bushu.cli import app
from bushu.package.store import verify_package
from fixtures.generators import SENTENCES

pytest.importorskip("nncf", reason="the optimize extra is not installed")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def compressed(gpt2_package, tmp_path_factory):
    from bushu.optimize.config import parse_budget
    from bushu.optimize.generation import optimize_generator

    out = tmp_path_factory.mktemp("compressed") / "tiny-gpt2-small"
    result = optimize_generator(gpt2_package, out, eval_file=SENTENCES, budget=parse_budget("50%"),
                                families=("openvino-int8", "openvino-int4", "onnxruntime-int8", "onnxruntime-int4"),
                                threads=1, streams=4, new_tokens=4,
                                rounds=1)
    return out, result


def test_perplexity_through_the_decode_step_equals_transformers(gpt2_package, gpt2_source):
    import torch

    from bushu.generate.config import EngineSettings
    from bushu.generate.package import open_core
    from bushu.optimize.generation import perplexity

    core = open_core(gpt2_package, verify_package(gpt2_package), EngineSettings(max_sequences=8))
    texts = [core.codec.encode(line) for line in SENTENCES.read_text().splitlines()[:6]]
    nll = count = 0.0
    with torch.inference_mode():
        for ids in texts:
            logits = gpt2_source(input_ids=torch.tensor([ids])).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))
            count += len(ids) - 1
    assert perplexity(core, texts) == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_compressed_steps_hold_int8_and_int4_weights_and_are_listed(compressed):
    out, result = compressed
    manifest = verify_package(out)  # every written file hashed, nothing half-written
    rows = {r.name: r for r in result.rows}
    for name, kinds in (("openvino-int8", ("u8", "i8")), ("openvino-int4", ("u4", "i4")),
                        ("onnxruntime-int8", (8,)), ("onnxruntime-int4", (4,))):
        row = rows[name]
        assert row.selection is not None and row.confirmation is not None and row.tokens_per_s > 0
        if name in manifest.variants:  # kept: its step is in the package, its weights compressed
            step = out / manifest.variants[name].options["step"]
            assert manifest.variants[name].options["step"] in manifest.files
            if step.suffix == ".xml":
                assert any(re.search(f'element_type="{k}"', step.read_text()) for k in kinds), name
            else:
                import onnx

                bits = {a.i for n in onnx.load(str(step)).graph.node if n.op_type == "MatMulNBits"
                        for a in n.attribute if a.name == "bits"}
                assert bits == set(kinds), name
        else:
            assert row.reason and not (out / "variants" / name).exists()
    assert manifest.default_variant == result.choice
    assert "pytorch-fp32" in manifest.variants
    report = (out / "report.md").read_text()
    assert report.count("| openvino-int") == 2 and report.count("| onnxruntime-int") == 2


def test_the_chosen_variant_generates_through_the_cli(compressed):
    out, _ = compressed
    result = run("generate", out, "The train to Kyoto", "--max-tokens", "5")
    assert result.exit_code == 0, result.output
    assert result.output.strip()


def test_a_variant_in_budget_on_selection_only_is_passed_over_for_the_next():
    from bushu.optimize.generation import GenRow, _choose

    reference = (10.0, 10.0)
    holds = lambda v, half: v - reference[half] <= 0.5  # noqa: E731
    rows = [GenRow("base", "fp32", "", 10.0, 10.0, 100.0), GenRow("fast", "int4", "", 10.2, 11.0, 300.0),
            GenRow("next", "int8", "", 10.1, 10.3, 200.0), GenRow("slow", "bf16", "", 10.0, 10.0, 90.0)]
    choice, why = _choose(rows, "base", holds, {"base": 100.0})
    assert choice == "next" and "2.00×" in why
    assert "not on the confirmation prompts" in rows[1].reason
    rows[2].confirmation = 12.0
    assert _choose(rows, "base", holds, {"base": 100.0})[0] == "base"  # 'slow' holds but is not faster


def test_greedy_agreement_counts_tokens_before_the_first_difference():
    from bushu.optimize.generation import agreement

    assert agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [5, 6]]) == pytest.approx(4 / 6)


@pytest.mark.parametrize(("args", "message"), [
    (["--metric", "cosine"], "scored on perplexity or greedy_agreement"),
    (["--families", "openvino-int3"], "unknown generation variant families ['openvino-int3']"),
    (["--eval", "prompts.npz"], "a .txt file, one prompt a line"),
    (["--eval", "three.txt"], "3 prompts; at least 4"),
    (["--eval", "single.txt"], "perplexity needs prompts of at least two tokens"),
])
def test_bad_arguments_name_the_problem_and_write_nothing(gpt2_package, tmp_path, args, message):
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "single.txt").write_text("a\nb\nc\nd\n")  # one token each
    (tmp_path / "prompts.npz").write_bytes(b"")
    args = [str(tmp_path / a) if a.endswith((".txt", ".npz")) else a for a in args]
    eval_args = [] if "--eval" in args else ["--eval", SENTENCES]
    result = run("optimize", gpt2_package, "-o", tmp_path / "out", *eval_args, *args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_openvino_telemetry_sends_nothing():
    pytest.importorskip("openvino_telemetry")
    from openvino_telemetry.utils.sender import TelemetrySender

    from bushu.offline import no_openvino_telemetry

    class Backend:
        sent = []

        def send(self, message):
            self.sent.append(message)

    no_openvino_telemetry()
    sender = TelemetrySender()
    sender.send(Backend(), {"event": "x"})
    sender.executor.shutdown(wait=True)
    assert Backend.sent == []


def test_the_openvino_decode_step_is_verified_like_the_default(gpt2_dir, tmp_path):
    """Logits at every cached step within 1e-4 of transformers', greedy tokens equal to generate()."""
    from bushu.export.hf_generate import pack_hf_generator

    manifest = pack_hf_generator(gpt2_dir, tmp_path / "ov", name="ov", prompts=8, openvino=True)
    variant = manifest.variants["openvino-fp32"]
    assert variant.max_rel_error["logits"] < 1e-4 and variant.metrics["greedy_prompts_equal"] == 8


def test_the_onnx_step_rewritten_for_matmulnbits_gives_the_pytorch_step_logits(gpt2_package, tmp_path):
    import torch

    from bushu.generate.config import EngineSettings
    from bushu.generate.ort_decode import OrtDecode, export_step
    from bushu.generate.package import open_core

    core = open_core(gpt2_package, verify_package(gpt2_package), EngineSettings(max_sequences=4))
    cache = core.runner.cache
    cache.reserve(3, 16)
    for row, n in enumerate((3, 7, 5)):
        core.model.prefill(torch.arange(10, 10 + n), row, 0, cache)
    ids, lengths = torch.tensor([4, 8, 15]), torch.tensor([3, 7, 5])
    step = OrtDecode(core.model, cache, 1, export_step(core.model, cache, tmp_path / "step.onnx"))
    import onnx

    assert "Gemm" not in {n.op_type for n in onnx.load(str(tmp_path / "step.onnx")).graph.node}
    ours = step(ids, lengths, cache)
    keys = cache.k[:, :3].clone()
    reference = core.model.decode(ids, lengths, cache)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4)
    assert torch.allclose(keys, cache.k[:, :3], atol=1e-5)  # the ONNX step wrote the keys the PyTorch step did


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_the_step_graph_prefills_prompt_chunks_as_pytorch_does(gpt2_package, tmp_path, runtime):
    """A prompt through the step graph in two chunks (the second reading the first from the cache)
    gives PyTorch's last logits and writes PyTorch's keys and values, in a row that is not row 0."""
    import torch

    from bushu.generate.config import EngineSettings
    from bushu.generate.openvino_decode import OpenVinoDecode
    from bushu.generate.ort_decode import OrtDecode, export_step
    from bushu.generate.package import open_core

    core = open_core(gpt2_package, verify_package(gpt2_package), EngineSettings(max_sequences=4))
    cache = core.runner.cache
    cache.reserve(3, 32)
    prompt = torch.arange(20, 33)
    step = (OpenVinoDecode(core.model, cache, 1) if runtime == "openvino"
            else OrtDecode(core.model, cache, 1, export_step(core.model, cache, tmp_path / "step.onnx")))
    step.prefill(prompt[:8], 2, 0, cache)
    ours = step.prefill(prompt[8:], 2, 8, cache)
    keys, values = cache.k[:, 2, :, :13].clone(), cache.v[:, 2, :, :13].clone()
    reference = core.model.prefill(prompt, 1, 0, cache)
    assert ours.shape == reference.shape == (1, core.model.vocab_size)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4)
    assert torch.allclose(keys, cache.k[:, 1, :, :13], atol=1e-5)
    assert torch.allclose(values, cache.v[:, 1, :, :13], atol=1e-5)


def test_a_step_file_with_other_inputs_is_refused_with_what_to_do(gpt2_package, tmp_path):
    """A step graph as an earlier bushu saved it (ids, lengths, the whole cache as two inputs)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    from bushu.errors import PackageError
    from bushu.generate.config import EngineSettings
    from bushu.generate.openvino_decode import OpenVinoDecode
    from bushu.generate.package import open_core

    core = open_core(gpt2_package, verify_package(gpt2_package), EngineSettings(max_sequences=4))
    inputs = [ops.parameter([-1], np.int64), ops.parameter([-1], np.int64)] + \
        [ops.parameter([-1, -1, -1, -1, -1], np.float32) for _ in range(2)]
    ov.save_model(ov.Model([ops.convert(inputs[0], "f32")], inputs), str(tmp_path / "step.xml"))
    with pytest.raises(PackageError, match="takes 4 inputs, not the .*run `bushu optimize` again"):
        OpenVinoDecode(core.model, core.runner.cache, 1, tmp_path / "step.xml")


STEP_AND_NNCF = """
import time
import numpy as np
import bushu  # first, as every bushu entry point
import openvino as ov  # its import alone reports usage otherwise
from openvino import opset13 as ops
x = ops.parameter([1, 64], np.float32)
model = ov.Model([ops.matmul(x, ops.constant(np.ones((64, 64), np.float32)), False, False)], [x])
import nncf
nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
time.sleep(2)  # the reports go from a worker thread's child process
"""


def test_openvino_and_nncf_send_nothing_off_this_machine(tmp_path):
    """Without bushu.offline this process looks up and posts to OpenVINO's telemetry address (seen)."""
    import sys

    from tests.fixtures.network import outside_addresses, strace_available

    if not strace_available():
        pytest.skip("strace is not installed (.ci/run installs it)")
    assert outside_addresses([sys.executable, "-c", STEP_AND_NNCF], tmp_path / "strace.log") == []
