"""`bushu generate` and `bushu bench --generate` as a user runs them."""

from typer.testing import CliRunner

from bushu.cli import app
from fixtures.servers import ThreadServer
from generate.test_serve import generate as served_generate


def test_generate_prints_what_the_server_answers_streamed_or_not(gpt2_package):
    from bushu.serve.settings import ServeSettings

    with ThreadServer([gpt2_package], ServeSettings(threads=1)) as server:
        expected = served_generate(server.url, "tiny-gpt2", "the cat sat", max_tokens=10, ignore_eos=True)["text_output"]
        result = CliRunner().invoke(app, ["bench", server.url, "--generate", "-c", "3", "--requests", "4",
                                          "--prompt-tokens", "16", "--new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "32 tokens in" in result.output and "output tokens/s" in result.output  # 4 prompts × 8 tokens
    # no --max-tokens: the package's default of 64 would run on; ignore_eos is a server option, so compare 10 tokens
    plain = CliRunner().invoke(app, ["generate", str(gpt2_package), "the cat sat", "--max-tokens", "10"])
    streamed = CliRunner().invoke(app, ["generate", str(gpt2_package), "the cat sat", "--max-tokens", "10", "--stream"])
    assert plain.exit_code == 0 and streamed.exit_code == 0, plain.output + streamed.output
    assert expected.startswith(plain.output.rstrip("\n")) and plain.output == streamed.output


def test_generate_refuses_bad_input_by_name(gpt2_package, tiny_package):
    result = CliRunner().invoke(app, ["generate", str(gpt2_package), "hi", "--max-tokens", "0"])
    assert result.exit_code == 1 and "'max_tokens' must be at least 1" in result.output
    result = CliRunner().invoke(app, ["generate", str(tiny_package), "hi"])
    assert result.exit_code == 1 and "not a generation package" in result.output


def test_a_generation_package_is_not_run_as_a_tensor_model(gpt2_package):
    import pytest

    import bushu
    from bushu.errors import InvalidInput

    with pytest.raises(InvalidInput, match="text-generation package: run it with `bushu generate` or `bushu serve`"):
        bushu.load(gpt2_package)
