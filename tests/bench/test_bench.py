"""`bushu bench` and its parts, against a real `bushu serve` of the tiny package on port 0."""

import numpy as np
import pytest
from typer.testing import CliRunner

from bushu.bench import run_load, v2_target
from bushu.bench.loadgen import LoadResult
from bushu.bench.process import bushu_serve, free_port
from bushu.bench.report import plot_latency, result_table
from bushu.bench.target import Target, sample_inputs, v2_body
from bushu.cli import app
from bushu.errors import InvalidInput, NotFound
from bushu.serve.codec import decode_request

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def server(tiny_package):
    with bushu_serve([tiny_package], "--max-queue-delay-ms", "1") as process:
        yield process


def check_result(result: LoadResult) -> None:
    s = result.summary()
    assert result.requests > 0 and result.errors == {}
    assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["req_per_s"] == pytest.approx(result.requests / result.duration_s)
    assert np.all(np.diff(result.started_s) >= 0) and result.started_s[0] >= 0


@pytest.mark.parametrize(("binary", "client"), [(False, "raw"), (True, "raw"), (False, "aiohttp"), (True, "aiohttp")])
def test_load_against_a_real_server(server, binary, client, tmp_path):
    target = v2_target(server.url, binary=binary)
    assert target.url == f"{server.url}/v2/models/tiny/infer"
    result = run_load(target, concurrency=4, duration=0.8, warmup=0.2, client=client)
    check_result(result)
    assert result.extra == {"client": client}
    png = plot_latency([("tiny", result)], tmp_path / "plot.png", title="t")
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_bodies_are_what_the_server_decodes():
    metadata = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 6]},
                           {"name": "ids", "datatype": "INT64", "shape": [-1, -1]}]}
    inputs = sample_inputs(metadata)
    for binary in (False, True):
        body, headers = v2_body(inputs, binary)
        decoded = decode_request(body, headers.get("Inference-Header-Content-Length"))
        assert decoded.inputs["x"].shape == (1, 6) and decoded.inputs["ids"].shape == (1, 16)
        np.testing.assert_array_equal(decoded.inputs["x"], inputs["x"][1])
        np.testing.assert_array_equal(decoded.inputs["ids"], inputs["ids"][1])
        assert decoded.binary_default is binary


def test_load_split_over_processes(server):
    result = run_load(v2_target(server.url), concurrency=4, duration=0.5, warmup=0.2, processes=2)
    check_result(result)
    assert result.processes == 2


@pytest.mark.parametrize("client", ["raw", "aiohttp"])
def test_errors_are_counted_by_status(server, client):
    bad = Target(server.url + "/v2/models/nope/infer", b"{}", {"Content-Type": "application/json"})
    result = run_load(bad, concurrency=2, duration=0.3, warmup=0, client=client)
    assert result.requests == 0 and set(result.errors) == {"404"} and result.error_count > 0
    assert "404×" in _render(result_table([("bad", result)]))


@pytest.mark.parametrize("client", ["raw", "aiohttp"])
def test_refused_connections_are_counted_not_raised(client):
    target = Target(f"http://127.0.0.1:{free_port()}/v2/models/m/infer", b"{}")
    result = run_load(target, concurrency=2, duration=0.2, warmup=0, client=client)
    assert result.requests == 0 and result.error_count > 0
    assert any("Connect" in name or "Refused" in name for name in result.errors), result.errors


def test_bad_arguments():
    target = Target("http://127.0.0.1:1/", b"")
    with pytest.raises(ValueError, match="client"):
        run_load(target, client="curl")
    with pytest.raises(ValueError, match="concurrency"):
        run_load(target, concurrency=0)


def _render(table) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_table_has_ratios_to_the_baseline():
    fast = LoadResult(np.full(100, 2_000_000), np.linspace(0, 1, 100), {}, 1.0, 4)
    slow = LoadResult(np.full(20, 8_000_000), np.linspace(0, 1, 20), {}, 1.0, 4)
    text = _render(result_table([("fast", fast), ("slow", slow)], baseline="slow"))
    assert "5.00×" in text and "0.25×" in text


def test_cli_bench_url(server, tmp_path):
    plot = tmp_path / "b.png"
    result = run("bench", server.url, "-c", "4", "-d", "1", "--warmup", "0.2", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "req/s" in result.output and "p99" in result.output
    assert plot.read_bytes().startswith(PNG_MAGIC)


def test_cli_bench_package_serves_it_for_the_run(tiny_package, tmp_path):
    plot = tmp_path / "b.png"
    result = run("bench", tiny_package, "-c", "2", "-d", "0.5", "--warmup", "0.1", "--binary", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "binary" in result.output and plot.read_bytes().startswith(PNG_MAGIC)


def test_cli_bench_errors(server, tmp_path):
    unreachable = run("bench", f"http://127.0.0.1:{free_port()}", "-d", "0.1", "--plot", tmp_path / "x.png")
    assert unreachable.exit_code == 1 and "cannot reach" in unreachable.output
    unknown = run("bench", server.url, "--model", "nope", "-d", "0.1", "--plot", tmp_path / "x.png")
    assert unknown.exit_code == 1 and "does not serve a model named 'nope'" in unknown.output
    for bad in ("ftp://example.org", "no-such-dir", "http://:80", "https://127.0.0.1:1"):
        result = run("bench", bad, "-d", "0.1", "--plot", tmp_path / "x.png")
        assert result.exit_code == 1 and "error" in result.output, (bad, result.output)
    assert not (tmp_path / "x.png").exists()


def test_target_errors(server):
    with pytest.raises(NotFound):
        v2_target(server.url, "nope")
    with pytest.raises(InvalidInput):
        v2_target("localhost:8000")


def test_a_server_that_dies_is_reported_with_its_output(tmp_path):
    from bushu.errors import BushuError

    with pytest.raises(BushuError, match=r"exited with status 1 before it was ready(.|\n)*not a package"):
        bushu_serve([tmp_path / "missing"]).start()


def test_markdown_table():
    from bushu.bench.report import markdown_table

    fast = LoadResult(np.full(100, 2_000_000), np.linspace(0, 1, 100), {}, 1.0, 4)
    slow = LoadResult(np.full(20, 8_000_000), np.linspace(0, 1, 20), {"503": 2}, 1.0, 4)
    text = markdown_table([("fast", fast), ("slow", slow)], baseline="slow")
    lines = text.splitlines()
    assert lines[0].startswith("| server | requests | req/s |") and len(lines) == 4
    assert "| fast | 100 | 100 | 2.00 |" in text and "5.00×" in text and "2 (503×2)" in text


def test_a_second_start_is_refused_so_no_server_is_left_unowned(server):
    pid = server.pid
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    assert server.pid == pid and server.proc.poll() is None  # the first one still runs, still owned


def test_grpc_load_against_a_real_server(tiny_package):
    """The gRPC client: a pre-serialised ModelInferRequest, counted like the HTTP clients; errors by code name."""
    from tritonclient.grpc import service_pb2

    port = free_port()
    request = service_pb2.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 6])
    request.raw_input_contents.append(np.ones((1, 6), "<f4").tobytes())
    with bushu_serve([tiny_package], "--grpc-port", str(port), "--max-queue-delay-ms", "1"):
        result = run_load(Target(f"grpc://127.0.0.1:{port}", request.SerializeToString(), label="grpc"),
                          concurrency=4, duration=0.8, warmup=0.2, client="grpc")
        check_result(result)
        request.model_name = "absent"
        bad = run_load(Target(f"grpc://127.0.0.1:{port}", request.SerializeToString()), concurrency=2,
                       duration=0.3, warmup=0, client="grpc")
    assert bad.requests == 0 and set(bad.errors) == {"NOT_FOUND"}
