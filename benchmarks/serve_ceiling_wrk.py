"""bushu's V2 routes against the bare-ASGI ceiling, driven by C clients: wrk (HTTP/1.1), h2load (gRPC).

    python benchmarks/serve_ceiling_wrk.py [--package DIR] [--duration 10] [--rounds 2]

`serve_vs_peers.py` drives every server with bushu's Python load generator, which on 2 cores
saturates before the ceiling does (there the ceiling and bushu come out close). wrk costs the
machine far less per request, so this table shows what the server itself costs. Servers: the
bare ASGI app of `peers/bare_asgi.py` (reads the body, parses the JSON, answers a constant), and
`bushu serve` with its access log on (the default) and off (`--log-level warning`), same
package, batching and threads as `serve_vs_peers.py`. Each runs alone, one after another, and
the whole series is repeated `--rounds` times (the machine is shared: compare within a round).

Two more bushu rows: the binary tensor extension over HTTP (wrk), and ModelInfer over gRPC driven
by h2load (nghttp2's HTTP/2 load generator: a gRPC call is an HTTP/2 POST of a length-prefixed
protobuf, sent here pre-serialised with raw_input_contents as tritonclient sends it). h2load
counts HTTP/2 status codes only, while gRPC reports failures in trailers, so every gRPC row is
checked against bushu's own statistics (`/v2/models/{m}/stats`: inferences that succeeded).

Besides req/s and latency, each row gives the server's CPU time per request, for the whole
process and for its event-loop thread alone (from /proc): on a loaded machine req/s swings with
the neighbours, CPU per request much less. Needs `wrk` and `h2load` on PATH (Debian:
`apt-get install wrk nghttp2-client`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_vs_peers import check_grpc_answer, ensure_package, grpc_body, peer, the_tensor  # noqa: E402  (a sibling)

from bushu.bench.process import ServerProcess, bushu_serve, free_port  # noqa: E402
from bushu.bench.target import Target, v2_body  # noqa: E402

console = Console(width=150)


def cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/.../stat file, in seconds."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: Path, seconds: float, connections: int) -> str:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def cpu_during(server: ServerProcess, load: Callable[[], str]) -> tuple[str, float, float]:
    """`load()`'s output, and the CPU seconds the server used meanwhile: whole process, event-loop thread."""
    pid = server.pid
    process, loop = f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat"
    before = cpu_seconds(process), cpu_seconds(loop)
    out = load()
    return out, cpu_seconds(process) - before[0], cpu_seconds(loop) - before[1]


#: gRPC's method path for V2 ModelInfer (KServe's inference.GRPCInferenceService).
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def h2load(url: str, message: Path, seconds: float, connections: int) -> str:
    """`connections` HTTP/2 connections, one call in flight on each (as wrk's one per connection)."""
    command = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds:g}", "-d", str(message),
               "-H", "content-type: application/grpc", "-H", "te: trailers", url + MODEL_INFER]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def succeeded(server: ServerProcess, name: str) -> int:
    """Inferences of `name` that bushu counted as successful (its statistics extension)."""
    import httpx

    stats = httpx.get(f"{server.url}/v2/models/{name}/stats", timeout=10).json()
    return sum(m["inference_stats"]["success"]["count"] for m in stats["model_stats"])


def measure_grpc(server: ServerProcess, url: str, message: Path, name: str, args: argparse.Namespace
                 ) -> dict[str, float]:
    h2load(url, message, args.warmup, args.connections)
    ok_before = succeeded(server, name)
    out, cpu, loop = cpu_during(server, lambda: h2load(url, message, args.duration, args.connections))
    ok = succeeded(server, name) - ok_before
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                     r"(\d+) timeout", out)
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)  # min, max, mean
    requests = int(done[2])  # type: ignore[index]
    return {
        "req_per_s": float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)[1]),  # type: ignore[index]
        "p50": float("nan"), "p99": float("nan"), "mean": _ms(timing[3]),  # type: ignore[index]
        "cpu_us": cpu / requests * 1e6, "loop_us": loop / requests * 1e6,
        # a call h2load saw answered 200 that bushu did not count as a success failed in its trailers
        "errors": int(done[3]) + int(done[4]) + int(done[5]) + max(0, requests - ok),  # type: ignore[index]
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def measure(server: ServerProcess, url: str, script: Path, args: argparse.Namespace) -> dict[str, float]:
    wrk(url, script, args.warmup, args.connections)
    out, cpu, loop = cpu_during(server, lambda: wrk(url, script, args.duration, args.connections))
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M)[1]), "p99": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        "cpu_us": cpu / requests * 1e6, "loop_us": loop / requests * 1e6,
        "errors": (int(bad[1]) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, help="seed CNN package (default: train one into out/bench/digits)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="times the whole series runs")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    for tool, package_name in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH (Debian: apt-get install {package_name})")

    package = ensure_package(args.package)
    name = orjson.loads((package / "bushu.json").read_bytes())["name"]
    body, _ = v2_body({"image": ("FP32", the_tensor()[None])})
    binary, binary_headers = v2_body({"image": ("FP32", the_tensor()[None])}, binary=True)
    work = Path(tempfile.mkdtemp(prefix="bushu-wrk-"))
    script, binary_script = work / "post.lua", work / "binary.lua"
    for file, payload, headers in ((script, body, {"Content-Type": "application/json"}),
                                   (binary_script, binary, binary_headers)):
        file.with_suffix(".body").write_bytes(payload)
        file.write_text(f'wrk.method = "POST"\nwrk.body = io.open("{file.with_suffix(".body")}", "rb"):read("*a")\n'
                        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items()))
    message = work / "infer.grpc"
    protobuf = grpc_body(the_tensor()[None], name)
    message.write_bytes(b"\x00" + len(protobuf).to_bytes(4, "big") + protobuf)  # gRPC's length-prefixed frame
    grpc_port = free_port()
    serve = ("--max-batch-size", "32", "--max-queue-delay-ms", "5", "--threads", str(args.threads))
    env = {"OMP_NUM_THREADS": str(args.threads)}
    servers = {
        "ceiling": lambda: (peer("bare_asgi.py", package, args.threads, "/", "bare ASGI"), "/"),
        "bushu": lambda: (bushu_serve([package], *serve, env=env), f"/v2/models/{name}/infer"),
        "bushu-no-access-log": lambda: (bushu_serve([package], *serve, "--log-level", "warning", env=env),
                                        f"/v2/models/{name}/infer"),
        "bushu-http-binary": lambda: (bushu_serve([package], *serve, env=env), f"/v2/models/{name}/infer"),
        "bushu-grpc": lambda: (bushu_serve([package], *serve, "--grpc-port", str(grpc_port), env=env),
                               f"http://127.0.0.1:{grpc_port}"),
    }
    load = os.getloadavg()
    table = Table("round", "server", "req/s", "÷ ceiling", "p50 ms", "p99 ms", "CPU µs/req", "event loop µs/req",
                  "errors", title=f"V2 JSON infer ({len(body):,} B body) under wrk, {args.connections} connections, "
                                  f"{args.duration:g} s per server; {os.cpu_count()} CPUs, load average before "
                                  f"{load[0]:.2f}")
    for round_ in range(1, args.rounds + 1):
        ceiling = None
        for key, start in servers.items():
            server, path = start()
            with server:
                if key == "bushu-grpc":
                    check_grpc_answer(Target(path.replace("http", "grpc", 1), protobuf, {}, key), key)
                    row = measure_grpc(server, path, message, name, args)
                else:
                    row = measure(server, server.url + path, binary_script if key == "bushu-http-binary" else script,
                                  args)
            ceiling = ceiling or row["req_per_s"]
            table.add_row(str(round_), key, f"{row['req_per_s']:,.0f}", f"{row['req_per_s'] / ceiling:.0%}",
                          f"{row['p50']:.2f}" if "mean" not in row else f"mean {row['mean']:.2f}", f"{row['p99']:.2f}".replace("nan", "—"), f"{row['cpu_us']:.0f}", f"{row['loop_us']:.0f}",
                          str(int(row["errors"])))
    console.print(table)
    console.print(f"load average after {os.getloadavg()[0]:.2f}", highlight=False)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
