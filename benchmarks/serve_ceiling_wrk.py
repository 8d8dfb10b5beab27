"""bushu's HTTP JSON V2 route against the bare-ASGI ceiling, driven by wrk (a C client).

    python benchmarks/serve_ceiling_wrk.py [--package DIR] [--duration 10] [--rounds 2]

`serve_vs_peers.py` drives every server with bushu's Python load generator, which on 2 cores
saturates before the ceiling does (there the ceiling and bushu come out close). wrk costs the
machine far less per request, so this table shows what the server itself costs. Servers: the
bare ASGI app of `peers/bare_asgi.py` (reads the body, parses the JSON, answers a constant), and
`bushu serve` with its access log on (the default) and off (`--log-level warning`), same
package, batching and threads as `serve_vs_peers.py`. Each runs alone, one after another, and
the whole series is repeated `--rounds` times (the machine is shared: compare within a round).

Besides req/s and latency, each row gives the server's CPU time per request, for the whole
process and for its event-loop thread alone (from /proc): on a loaded machine req/s swings with
the neighbours, CPU per request much less. Needs `wrk` on PATH (Debian: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_vs_peers import ensure_package, peer, the_tensor  # noqa: E402  (a sibling script)

from bushu.bench.process import ServerProcess, bushu_serve  # noqa: E402
from bushu.bench.target import v2_body  # noqa: E402

console = Console(width=150)


def cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/.../stat file, in seconds."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: Path, seconds: float, connections: int) -> str:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def measure(server: ServerProcess, url: str, script: Path, args: argparse.Namespace) -> dict[str, float]:
    wrk(url, script, args.warmup, args.connections)
    pid = server.pid
    process, loop = f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat"
    before = cpu_seconds(process), cpu_seconds(loop)
    out = wrk(url, script, args.duration, args.connections)
    after = cpu_seconds(process), cpu_seconds(loop)
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M)[1]), "p99": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        "cpu_us": (after[0] - before[0]) / requests * 1e6, "loop_us": (after[1] - before[1]) / requests * 1e6,
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
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")

    package = ensure_package(args.package)
    name = orjson.loads((package / "bushu.json").read_bytes())["name"]
    body, _ = v2_body({"image": ("FP32", the_tensor()[None])})
    work = Path(tempfile.mkdtemp(prefix="bushu-wrk-"))
    (work / "body.json").write_bytes(body)
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = io.open("{work / "body.json"}", "rb"):read("*a")\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    serve = ("--max-batch-size", "32", "--max-queue-delay-ms", "5", "--threads", str(args.threads))
    env = {"OMP_NUM_THREADS": str(args.threads)}
    servers = {
        "ceiling": lambda: (peer("bare_asgi.py", package, args.threads, "/", "bare ASGI"), "/"),
        "bushu": lambda: (bushu_serve([package], *serve, env=env), f"/v2/models/{name}/infer"),
        "bushu-no-access-log": lambda: (bushu_serve([package], *serve, "--log-level", "warning", env=env),
                                        f"/v2/models/{name}/infer"),
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
                row = measure(server, server.url + path, script, args)
            ceiling = ceiling or row["req_per_s"]
            table.add_row(str(round_), key, f"{row['req_per_s']:,.0f}", f"{row['req_per_s'] / ceiling:.0%}",
                          f"{row['p50']:.2f}", f"{row['p99']:.2f}", f"{row['cpu_us']:.0f}", f"{row['loop_us']:.0f}",
                          str(int(row["errors"])))
    console.print(table)
    console.print(f"load average after {os.getloadavg()[0]:.2f}", highlight=False)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
