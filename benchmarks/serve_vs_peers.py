"""bushu serve against LitServe, a plain FastAPI endpoint, and a bare ASGI app (the ceiling); and
against itself with the infer route left to Starlette's router (bushu-starlette), which measures
the raw-ASGI fast path, and with `--log-level warning` (bushu-no-access-log), which measures the
access log's cost (one line per request on stderr, on by default); and bushu's other two V2
encodings of the same tensor: the binary tensor extension over HTTP (bushu-http-binary) and
ModelInfer over gRPC (bushu-grpc, raw_input_contents, driven by the load generator's gRPC client).

Each server runs the seed CNN package (ONNX Runtime, intra-op threads pinned, 1 by default) in
a subprocess on this machine, and is driven by the SAME load generator (`bushu.bench`) with the
SAME load: C closed-loop clients (32) sending the same 3×32×32 FP32 tensor as JSON, numbers
written identically (orjson's shortest float32 form). Only the envelope differs: the V2 body
(`{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1,3,32,32], "data": [...]}]}`, flat
data as tritonclient sends it) for bushu and the ceiling, `{"image": [[[...]]]}` for LitServe and
FastAPI. Servers run one after another, never together.

    python benchmarks/serve_vs_peers.py [--package DIR] [--duration 15] [--warmup 3] [--threads 1]

Without --package the seed CNN is trained and packaged once into out/bench/digits.
Prints one table (ratios to LitServe) and writes out/bench/serve_vs_peers.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console

from bushu.bench.loadgen import LoadResult, run_load
from bushu.bench.process import ServerProcess, bushu_serve, free_port
from bushu.bench.report import markdown_table, plot_latency, result_table
from bushu.bench.target import Target, v2_body

PEERS = Path(__file__).resolve().parent / "peers"
console = Console(width=150)


def the_tensor(seed: int = 0) -> np.ndarray:
    """One 3×32×32 image as the seed CNN sees it (a digit through the package's pre-processing)."""
    from bushu.apps.vision.data import load_digits_split, to_tensors

    return to_tensors(load_digits_split(seed=seed).test_images[:1])[0].astype(np.float32)


def ensure_package(package: Path | None) -> Path:
    if package is not None:
        return package
    out = Path("out/bench/digits")
    if not (out / "bushu.json").is_file():
        console.print(f"training and packaging the seed CNN into {out} …")
        subprocess.run([sys.executable, "-c", "from bushu.cli import app; app()", "train", "vision",
                        "-o", str(out), "--force"], check=True)
    return out


def peer(script: str, package: Path, threads: int, ready_path: str, name: str) -> ServerProcess:
    port = free_port()
    command = [sys.executable, str(PEERS / script), "--package", str(package), "--port", str(port),
               "--threads", str(threads)]
    env = {"PYTHONPATH": str(PEERS), "OMP_NUM_THREADS": str(threads)}
    return ServerProcess(command, url=f"http://127.0.0.1:{port}", ready_path=ready_path, env=env, name=name)


def grpc_body(tensor: np.ndarray, model: str) -> bytes:
    """The same tensor as a serialised ModelInferRequest (raw_input_contents, as tritonclient sends it)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="image", datatype="FP32", shape=tensor.shape)
    request.raw_input_contents.append(tensor.astype("<f4").tobytes())
    return request.SerializeToString()


def check_grpc_answer(target: Target, name: str) -> None:
    """As `check_answer`, over gRPC."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest.FromString(target.body)
    with grpc.insecure_channel(target.url.removeprefix("grpc://")) as channel:
        try:
            response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        except grpc.RpcError as exc:
            raise SystemExit(f"{name} answered {exc.code().name} to the benchmark request: {exc.details()}") from None
    if not response.outputs:
        raise SystemExit(f"{name} answered no outputs")


def check_answer(target: Target, name: str) -> None:
    """One request before the load: the server must answer 200 with logits (not just any 200)."""
    import httpx

    response = httpx.post(target.url, content=target.body, headers=target.headers, timeout=30)
    status, body = response.status_code, response.content
    if status != 200:
        raise SystemExit(f"{name} answered {status} to the benchmark request: {body[:300]!r}")
    doc, _ = json.JSONDecoder().raw_decode(body.decode("latin-1"))  # binary tensors may follow the JSON
    if "outputs" not in doc and "logits" not in doc and doc != {"ok": True}:
        raise SystemExit(f"{name} answered something else than logits: {body[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, help="seed CNN package (default: train one into out/bench/digits)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=1, help="load-generator processes")
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw",
                        help="load-generator client (raw: httptools on asyncio, ~35 µs/request; aiohttp: ~280 µs)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads in every server")
    parser.add_argument("--only", nargs="*",
                        help="run only these servers (bushu bushu-no-access-log bushu-starlette bushu-http-binary "
                             "bushu-grpc bushu-workers-2 bushu-ray-2 litserve fastapi ceiling)")
    parser.add_argument("--plot", type=Path, default=Path("out/bench/serve_vs_peers.png"))
    parser.add_argument("--nice", type=int, default=0,
                        help="lower this script's niceness (and so every server's and client's) by N; on a machine "
                             "shared with other work, keeps their CPU use from skewing the comparison (needs root)")
    args = parser.parse_args()
    niceness = os.nice(0)
    if args.nice:
        try:
            niceness = os.nice(-args.nice)
        except PermissionError:
            raise SystemExit(f"--nice {args.nice}: not permitted to raise this process's priority") from None

    package = ensure_package(args.package)
    tensor = the_tensor()
    v2, v2_headers = v2_body({"image": ("FP32", tensor[None])})
    binary, binary_headers = v2_body({"image": ("FP32", tensor[None])}, binary=True)
    grpc_port = free_port()
    grpc_request = grpc_body(tensor[None], orjson.loads((package / "bushu.json").read_bytes())["name"])
    natural = orjson.dumps({"image": tensor}, option=orjson.OPT_SERIALIZE_NUMPY)
    json_headers = {"Content-Type": "application/json"}

    servers: dict[str, tuple[ServerProcess, str, bytes, dict[str, str]]] = {
        "bushu": (bushu_serve([package], "--max-batch-size", "32", "--max-queue-delay-ms", "5",
                              "--threads", str(args.threads), env={"OMP_NUM_THREADS": str(args.threads)}),
                  "/v2/models/{name}/infer", v2, v2_headers),
        "bushu-no-access-log": (bushu_serve([package], "--max-batch-size", "32", "--max-queue-delay-ms", "5",
                                            "--threads", str(args.threads), "--log-level", "warning",
                                            env={"OMP_NUM_THREADS": str(args.threads)}),
                                "/v2/models/{name}/infer", v2, v2_headers),
        "bushu-http-binary": (bushu_serve([package], "--max-batch-size", "32", "--max-queue-delay-ms", "5",
                                          "--threads", str(args.threads), env={"OMP_NUM_THREADS": str(args.threads)}),
                              "/v2/models/{name}/infer", binary, binary_headers),
        "bushu-grpc": (bushu_serve([package], "--max-batch-size", "32", "--max-queue-delay-ms", "5", "--grpc-port",
                                   str(grpc_port), "--threads", str(args.threads),
                                   env={"OMP_NUM_THREADS": str(args.threads)}),
                       f"grpc://127.0.0.1:{grpc_port}", grpc_request, {}),
        "bushu-workers-2": (bushu_serve([package], "--max-batch-size", "32", "--max-queue-delay-ms", "5",
                                        "--threads", str(args.threads), "--workers", "2",
                                        env={"OMP_NUM_THREADS": str(args.threads)}),
                            "/v2/models/{name}/infer", v2, v2_headers),
        # each replica its own batcher; the front batches too and sends one Ray call per batch
        "bushu-ray-2": (bushu_serve([package], "--max-batch-size", "32", "--max-queue-delay-ms", "5",
                                    "--threads", str(args.threads), "--ray", "--replicas", "2",
                                    env={"OMP_NUM_THREADS": str(args.threads)}),
                        "/v2/models/{name}/infer", v2, v2_headers),
        "bushu-starlette": (peer("bushu_starlette.py", package, args.threads, "/v2/health/ready", "bushu (Starlette infer)"),
                            "/v2/models/{name}/infer", v2, v2_headers),
        "litserve": (peer("litserve_server.py", package, args.threads, "/health", "LitServe"),
                     "/predict", natural, json_headers),
        "fastapi": (peer("fastapi_server.py", package, args.threads, "/health", "FastAPI"),
                    "/predict", natural, json_headers),
        "ceiling": (peer("bare_asgi.py", package, args.threads, "/", "bare ASGI"), "/", v2, json_headers),
    }
    name = orjson.loads((package / "bushu.json").read_bytes())["name"]
    load = os.getloadavg()
    setup = (
        f"serve_vs_peers: package {package} ({name}); {os.cpu_count()} CPUs, load average before "
        f"{load[0]:.2f}; {args.concurrency} clients ({args.client}) in {args.processes} load process(es), "
        f"{args.warmup:g} s warm-up + {args.duration:g} s per server; ONNX Runtime intra-op threads "
        f"{args.threads}, inter-op 1; niceness {niceness}\n"
        f"bodies: V2 JSON {len(v2):,} B (bushu, ceiling), {{\"image\": [[[…]]]}} {len(natural):,} B "
        f"(LitServe, FastAPI)\n"
        "bushu: dynamic batching ≤32 rows, 5 ms queue delay, 1 instance; LitServe: max_batch_size=32, "
        "batch_timeout=0.005, 1 worker; FastAPI: no batching, one ORT call per request; "
        "ceiling: bare ASGI app that only parses the V2 JSON"
    )
    console.print(setup, highlight=False)
    results: list[tuple[str, LoadResult]] = []
    for key, (server, path, body, headers) in servers.items():
        if args.only and key not in args.only:
            continue
        with server:
            grpc = path.startswith("grpc://")
            target = Target(path if grpc else server.url + path.format(name=name), body, headers, key)
            (check_grpc_answer if grpc else check_answer)(target, key)
            started = time.monotonic()
            result = run_load(target, concurrency=args.concurrency, duration=args.duration,
                              warmup=args.warmup, processes=args.processes, client="grpc" if grpc else args.client)
            s = result.summary()
            console.print(f"  {key:<9} {s['req_per_s']:8,.0f} req/s  p99 {s['p99_ms']:7.2f} ms  "
                          f"errors {result.error_count}  ({time.monotonic() - started:.0f} s)", highlight=False)
        results.append((key, result))
    baseline = "litserve" if any(k == "litserve" for k, _ in results) else None
    console.print(result_table(results, baseline=baseline,
                               title=f"{args.concurrency} clients, same 3×32×32 FP32 tensor as JSON"))
    names = dict(results)
    verdict = ""
    if "bushu" in names and "litserve" in names:
        b, l = names["bushu"].summary(), names["litserve"].summary()
        rps_ok = b["req_per_s"] >= 5 * l["req_per_s"]
        p99_ok = b["p99_ms"] <= l["p99_ms"] / 3
        verdict = (f"must show: bushu ≥ 5× LitServe req/s: {b['req_per_s'] / l['req_per_s']:.2f}× "
                   f"({'met' if rps_ok else 'MISSED'}); bushu p99 ≤ ⅓ LitServe's: "
                   f"{b['p99_ms'] / l['p99_ms']:.2f}× ({'met' if p99_ok else 'MISSED'})")
        console.print(verdict, highlight=False)
    if "bushu" in names and "bushu-grpc" in names:
        ratio = names["bushu-grpc"].summary()["req_per_s"] / names["bushu"].summary()["req_per_s"]
        grpc_verdict = f"goal: bushu gRPC ≥ 1.5× bushu HTTP JSON req/s: {ratio:.2f}× ({'met' if ratio >= 1.5 else 'MISSED'})"
        verdict = f"{verdict}\n{grpc_verdict}" if verdict else grpc_verdict
        console.print(grpc_verdict, highlight=False)
    if "bushu" in names and "bushu-ray-2" in names:
        ratio = names["bushu-ray-2"].summary()["req_per_s"] / names["bushu"].summary()["req_per_s"]
        ray_verdict = f"goal: bushu on Ray Serve (2 replicas) ≥ 50% of bushu direct: {ratio:.0%} ({'met' if ratio >= 0.5 else 'MISSED'})"
        console.print(ray_verdict, highlight=False)
        verdict = f"{verdict}\n{ray_verdict}" if verdict else ray_verdict
    console.print(f"load average after {os.getloadavg()[0]:.2f}", highlight=False)
    record = args.plot.with_suffix(".md")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"# serve_vs_peers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
                      + setup.replace("\n", "  \n") + "\n\n"
                      + markdown_table(results, baseline=baseline) + (f"\n{verdict}\n" if verdict else ""))
    console.print(f"results → {record}", highlight=False)
    plot_latency(results, args.plot, title=f"serve_vs_peers: {args.concurrency} clients, 3×32×32 FP32 JSON")
    console.print(f"latency plot → {args.plot}", highlight=False)


if __name__ == "__main__":
    main()
