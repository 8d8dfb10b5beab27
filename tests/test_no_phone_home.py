"""ONNX Runtime 1.32 looks up and posts to mobile.events.data.microsoft.com from any process that
runs a session; `import bushu` turns that off. Watched with strace on a real process."""

import sys
import textwrap

import pytest

from tests.fixtures.network import outside_addresses, strace_available

SESSION = textwrap.dedent("""
    import time, numpy as np
    import bushu  # before onnxruntime, as every bushu entry point is
    import onnxruntime as ort
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.array([-1, 2], np.float32)})[0].tolist() == [0, 2]
    time.sleep(12)  # its telemetry thread first posts about 9 s after the session starts
""")


@pytest.mark.skipif(not strace_available(), reason="strace is not installed (.ci/run installs it)")
def test_an_onnx_runtime_session_sends_nothing_off_this_machine(tmp_path):
    assert outside_addresses([sys.executable, "-c", SESSION], tmp_path / "strace.log") == []
