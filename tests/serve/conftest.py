import shutil
from pathlib import Path

import pytest
import torch

from bushu.export import pack_module, pack_onnx, parse_input_spec
from fixtures.onnx_models import slow_matmul_chain
from fixtures.tiny import TinyGRU, TwoHeads


@pytest.fixture(scope="session")
def two_heads_package(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("pkg") / "heads"
    pack_module(TwoHeads(), [parse_input_spec("x:FP32:batch,6")], out, name="heads",
                output_names=["logits", "probs"])
    return out


@pytest.fixture(scope="session")
def gru_package(tmp_path_factory) -> Path:
    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("pkg") / "gru"
    pack_module(TinyGRU(), [parse_input_spec("ids:INT64:batch,sequence")], out, name="gru",
                value_ranges={"ids": (0, 20)})
    return out


@pytest.fixture(scope="session")
def slow_package(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("slow")
    slow_matmul_chain(tmp / "slow.onnx")
    return Path(pack_onnx(tmp / "slow.onnx", tmp / "pkg") and tmp / "pkg")


@pytest.fixture(scope="session")
def repository(tmp_path_factory, tiny_package, two_heads_package, gru_package) -> Path:
    """A model repository: tiny in versions 1 and 2, heads and gru in version 1."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(tiny_package, root / "tiny" / "1")
    shutil.copytree(tiny_package, root / "tiny" / "2")
    shutil.copytree(two_heads_package, root / "heads" / "1")
    shutil.copytree(gru_package, root / "gru" / "1")
    return root


@pytest.fixture(scope="module")
def client(server):
    """tritonclient's HTTP client on the module's `server` (test_grpc.py has a gRPC one of its own)."""
    import tritonclient.http as triton

    c = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield c
    c.close()
