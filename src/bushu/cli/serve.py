"""`bushu serve | bench`: the V2 server, and a load generator to measure one."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from bushu.cli.common import app, out, user_errors
from bushu.errors import BushuError, InvalidInput


@app.command()
@user_errors
def serve(
    paths: Annotated[list[Path], typer.Argument(help="packages and model repositories (<name>/<version>/)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8000,
    max_batch_size: Annotated[int, typer.Option(min=1, help="rows per batch at most")] = 32,
    max_queue_delay_ms: Annotated[float, typer.Option(min=0, help="how long a batch waits to fill")] = 5.0,
    max_queue_size: Annotated[int, typer.Option(min=1, help="queued requests per model before 503")] = 1024,
    max_queue_mb: Annotated[float, typer.Option(min=0.001, help="queued tensor data per model before 503")] = 256.0,
    max_request_rows: Annotated[int | None, typer.Option(min=1, help="rows per request (413 above; default: --max-batch-size)")] = None,
    instances: Annotated[int, typer.Option(min=1, help="model instances running batches in parallel")] = 1,
    timeout: Annotated[float, typer.Option(min=0.001, help="seconds before a request is answered 504")] = 30.0,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="largest request body (413 above)")] = 64.0,
    body_timeout: Annotated[float, typer.Option(min=0.001, help="seconds to send a whole body (408 and close after)")] = 30.0,
    max_corpus: Annotated[int, typer.Option(min=1, help="texts per /search corpus (413 above)")] = 1024,
    max_image_pixels: Annotated[int, typer.Option(min=1, help="pixels per image on app routes (413 above)")] = 4096 * 4096,
    threads: Annotated[int, typer.Option(min=0, help="intra-op threads per instance (0: runtime default)")] = 0,
    require_signature: Annotated[Path | None, typer.Option(help="public key every package must be signed with")] = None,
    decrypt_key: Annotated[Path | None, typer.Option(help="AES key file for encrypted packages (else $BUSHU_KEY)")] = None,
    tokens: Annotated[Path | None, typer.Option(help="JSON token file: bearer tokens with scopes and rate limits")] = None,
    rate_limit: Annotated[float | None, typer.Option(min=0.001, help="requests/s per client address without tokens")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    audit_log: Annotated[Path | None, typer.Option(help="also append audit lines to this file")] = None,
    log_format: Annotated[str, typer.Option(help="server lines on stderr as text or json (one object a line)")] = "text",
    log_level: Annotated[str, typer.Option(help="debug, info (an access line per request), warning or error")] = "info",
    max_tokens_in_flight: Annotated[int, typer.Option(min=1, help="generation: KV-cache tokens (prompt + new) "
                                                                  "reserved at most; beyond, requests wait")] = 32768,
    max_sequences: Annotated[int, typer.Option(min=1, help="generation: sequences decoded together at most")] = 64,
    grpc_port: Annotated[int | None, typer.Option(min=0, help="also serve V2 over gRPC on this port (0: any free port)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="server processes sharing the port (each loads every model)")] = 1,
    ray: Annotated[bool, typer.Option("--ray", help="run each model as a Ray Serve deployment (pip install 'bushu[ray]')")] = False,
    address: Annotated[str | None, typer.Option(help="--ray: the cluster to join (e.g. auto, ray://head:10001); "
                                                     "default: a local instance on 127.0.0.1")] = None,
    replicas: Annotated[int | None, typer.Option(min=1, help="--ray: replicas per model (default 1)")] = None,
    autoscale: Annotated[str | None, typer.Option(help="--ray: MIN,MAX replicas per model, scaled on queue depth")] = None,
) -> None:
    """Serve packages over the Open Inference Protocol v2 (HTTP, and gRPC with --grpc-port), with dynamic batching."""
    from bushu.package.encryption import load_key
    from bushu.serve import logs
    from bushu.serve.auth import load_tokens
    from bushu.serve.server import serve as run_server
    from bushu.serve.settings import ServeSettings

    if log_format not in logs.FORMATS:
        raise InvalidInput(f"--log-format must be one of {', '.join(logs.FORMATS)}, not {log_format!r}")
    if log_level not in logs.LEVELS:
        raise InvalidInput(f"--log-level must be one of {', '.join(logs.LEVELS)}, not {log_level!r}")

    for path in paths:
        if not path.is_dir():
            raise InvalidInput(f"{path}: not a package or model repository directory")
    settings = ServeSettings(
        max_batch_size=max_batch_size, max_queue_delay_ms=max_queue_delay_ms, max_queue_size=max_queue_size,
        instances=instances, timeout_s=timeout, max_body_bytes=int(max_body_mb * 1024 * 1024), threads=threads,
        max_queue_bytes=int(max_queue_mb * 1024 * 1024), max_request_rows=max_request_rows,
        body_timeout_s=body_timeout, max_corpus=max_corpus, max_image_pixels=max_image_pixels,
        require_signature=require_signature, decrypt_key=load_key(decrypt_key),
        tokens=tuple(load_tokens(tokens)) if tokens else (), anonymous_rate_per_s=rate_limit,
        max_tokens_in_flight=max_tokens_in_flight, max_sequences=max_sequences,
    )

    def announce(scheme: str, bound_host: str, bound_port: int) -> None:  # only once the port answers
        out.print(f"bushu serving on {scheme}://{bound_host}:{bound_port}", highlight=False)
        sys.stdout.flush()

    def announce_grpc(bound_host: str, bound_port: int) -> None:
        out.print(f"bushu gRPC on {bound_host}:{bound_port}", highlight=False)

    def worker_memory(processes: list) -> None:  # serve.workers.WorkerMemory, once all are ready
        mib = 1024 * 1024
        for p in processes:
            out.print(f"worker {p.pid}: RSS {p.rss / mib:,.0f} MiB, PSS {p.pss / mib:,.0f} MiB", highlight=False)
        out.print(f"{len(processes)} workers: PSS {sum(p.pss for p in processes) / mib:,.0f} MiB in all "
                  f"(RSS sum {sum(p.rss for p in processes) / mib:,.0f} MiB counts shared pages once per worker)",
                  highlight=False)
        sys.stdout.flush()

    logs.configure(log_format, log_level, audit_log)
    dataplane, owned = None, False
    if grpc_port is not None and (workers > 1 or ray):
        raise InvalidInput("--grpc-port serves from one process: it does not go with --workers or --ray yet")
    if ray or address or replicas or autoscale:
        dataplane, owned = _ray_front(ray, address, replicas, autoscale, workers)
    try:
        run_server(paths, host=host, port=port, settings=settings, on_ready=announce,
                   ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, grpc_port=grpc_port, on_grpc_ready=announce_grpc, workers=workers,
                   worker_setup=functools.partial(logs.configure, log_format, log_level, audit_log),
                   on_workers=worker_memory, dataplane=dataplane)
    finally:
        if owned:
            from bushu.serve.rayserve import local

            local.stop()


def _ray_front(ray: bool, address: str | None, replicas: int | None, autoscale: str | None, workers: int):
    """Check the --ray options, start or join Ray, and give the plane factory (serve.rayserve)."""
    if not ray:
        raise InvalidInput("--address, --replicas and --autoscale go with --ray")
    if workers > 1:
        raise InvalidInput("--workers and --ray do not go together: on Ray, scale with --replicas or --autoscale")
    if replicas is not None and autoscale is not None:
        raise InvalidInput("give --replicas N or --autoscale MIN,MAX, not both")
    bounds = None
    if autoscale is not None:
        parts = autoscale.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise InvalidInput(f"--autoscale takes MIN,MAX (two whole numbers), not {autoscale!r}")
        bounds = (int(parts[0]), int(parts[1]))
    from bushu.serve.rayserve import local
    from bushu.serve.rayserve.front import Scaling, ray_plane

    scaling = Scaling(replicas=replicas or 1, autoscale=bounds)
    owned = local.start(address)
    local.start_serve()
    return ray_plane(scaling), owned


@app.command()
@user_errors
def bench(
    target: Annotated[str, typer.Argument(metavar="URL_OR_PACKAGE", help="a V2 server's URL, or a package to serve for the run")],
    model: Annotated[str | None, typer.Option(help="model to load (default: the only one the server lists)")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", min=1, help="clients, each with one request in flight")] = 32,
    duration: Annotated[float, typer.Option("-d", "--duration", min=0.1, help="seconds measured")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0, help="seconds run first and not counted")] = 2.0,
    binary: Annotated[bool, typer.Option(help="send and ask for tensors as binary data, not JSON")] = False,
    processes: Annotated[int, typer.Option(min=1, help="client processes sharing the clients")] = 1,
    client: Annotated[str, typer.Option(help="raw (httptools on asyncio: cheapest, http only) or aiohttp (https too)")] = "raw",
    plot: Annotated[Path, typer.Option(help="PNG latency plot to write")] = Path("bench.png"),
    serve_arg: Annotated[list[str] | None, typer.Option("--serve-arg", help="extra `bushu serve` argument when given a package")] = None,
    generate: Annotated[bool, typer.Option(help="generation mode: concurrent streams on /v1/completions")] = False,
    requests: Annotated[int | None, typer.Option(help="generation: prompts sent (default: one per stream)")] = None,
    prompt_tokens: Annotated[int, typer.Option(min=1, help="generation: tokens per prompt")] = 128,
    new_tokens: Annotated[int, typer.Option(min=1, help="generation: tokens generated per prompt")] = 128,
) -> None:
    """Load a server (or a package served for the run): throughput, p50/p90/p99 latency, a PNG plot;
    with --generate, output tokens/s, time to first token and inter-token latency of -c streams."""
    from bushu.bench import run_load, served, v2_target
    from bushu.bench.report import plot_latency, result_table

    if generate:
        _bench_generation(target, model, serve_arg, concurrency, requests or concurrency, prompt_tokens, new_tokens)
        return

    if client not in ("raw", "aiohttp"):
        raise InvalidInput(f"--client must be raw or aiohttp, not {client!r}")
    if client == "raw" and target.startswith("https://"):
        raise InvalidInput("the raw client speaks plain http; use --client aiohttp for an https server")

    with served(target, serve_arg) as url:
        request = v2_target(url, model, binary=binary)
        out.print(f"benching {url}: {request.label}; {concurrency} clients ({client}) in {processes} process(es), "
                  f"{warmup:g} s warm-up, {duration:g} s measured", highlight=False)
        result = run_load(request, concurrency=concurrency, duration=duration, warmup=warmup, processes=processes,
                          client=client)
    name = request.label.partition(" ")[0]
    out.print(result_table([(name, result)]))
    plot_latency([(name, result)], plot, title=f"bushu bench {url} — {request.label}")
    out.print(f"latency plot → {plot}", highlight=False)
    if result.requests == 0:
        raise BushuError(f"no request succeeded ({result.error_count} failed: {result.errors})")


def _bench_generation(target: str, model: str | None, serve_arg: list[str] | None, streams: int, requests: int,
                      prompt_tokens: int, new_tokens: int) -> None:
    import numpy as np
    from rich.table import Table

    from bushu.bench import served
    from bushu.bench.generation import generation_model, run_generation

    with served(target, serve_arg) as url:
        name = model or generation_model(url)
        prompts = np.random.default_rng(0).integers(1, 200, size=(requests, prompt_tokens)).tolist()
        out.print(f"benching {url}: {name}, {requests} prompts of {prompt_tokens} tokens, {new_tokens} new tokens "
                  f"each, {streams} streams", highlight=False)
        result = run_generation(url, name, prompts, new_tokens=new_tokens, streams=streams)
    s = result.summary()
    table = Table("streams", "tokens", "tokens/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "errors")
    table.add_row(str(streams), f"{result.tokens:,}", f"{s['tokens_per_s']:,.1f}", f"{s['ttft_p50_ms']:.1f}",
                  f"{s['ttft_p99_ms']:.1f}", f"{s['itl_p50_ms']:.1f}", f"{s['itl_p99_ms']:.1f}", str(len(result.errors)))
    out.print(table)
    out.print(f"{result.tokens} tokens in {result.seconds:.2f} s: {s['tokens_per_s']:.1f} output tokens/s", highlight=False)
    if result.errors:
        raise BushuError(f"{len(result.errors)} requests failed: {result.errors[:3]}")
