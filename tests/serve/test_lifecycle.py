"""Loading without loss: replacing or unloading a version, and SIGTERM, under load."""

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from bushu.serve.settings import ServeSettings
from fixtures.servers import ProcessServer, ThreadServer

TINY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [0.5] * 6}]}
SLOW = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1024], "data": np.ones(1024).tolist()}]}
#: Sixteen rows: long enough in the model (~0.2 s) that ten such requests surely queue up.
SLOWER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [16, 1024], "data": np.ones(16 * 1024).tolist()}]}


def test_replacing_a_version_under_load_loses_no_request(repository):
    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            stop = asyncio.Event()

            async def load_loop(path):
                statuses = []
                while not stop.is_set():
                    statuses.append((await client.post(path, json=TINY)).status_code)
                return statuses

            workers = [asyncio.create_task(load_loop(p)) for p in
                       ["/v2/models/tiny/infer", "/v2/models/tiny/versions/1/infer"] * 4]
            reloads = []
            for _ in range(4):
                await asyncio.sleep(0.05)  # let traffic flow between replacements
                reloads.append((await client.post("/v2/repository/models/tiny/load")).status_code)
            stop.set()
            return reloads, [s for w in workers for s in await w]

    with ThreadServer([repository]) as server:
        reloads, statuses = asyncio.run(scenario(server.url))
    assert reloads == [200] * 4
    assert len(statuses) >= 16 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_unloading_answers_every_request_already_accepted(slow_package):
    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            accepted = [asyncio.create_task(client.post("/v2/models/slow/infer", json=SLOWER)) for _ in range(6)]
            deadline = time.monotonic() + 30
            while "bushu_queue_depth" not in (text := (await client.get("/metrics")).text) or \
                    'bushu_queue_depth{model="slow",version="1"} 0.0' in text:
                assert time.monotonic() < deadline, "requests never queued up"
                await asyncio.sleep(0.005)
            unload = await client.post("/v2/repository/models/slow/unload")
            after = await client.post("/v2/models/slow/infer", json=SLOW)
            return [r.status_code for r in await asyncio.gather(*accepted)], unload.status_code, after

    with ThreadServer([slow_package], ServeSettings(max_batch_size=16, threads=1)) as server:
        statuses, unload, after = asyncio.run(scenario(server.url))
    assert statuses == [200] * 6 and unload == 200
    assert after.status_code == 404 and "not loaded" in after.json()["error"]


def test_sigterm_drains_in_flight_requests_before_exit(slow_package):
    """Every request the server has read (queued, running or done) when SIGTERM arrives is answered.
    (A connection still in the kernel's accept backlog was never read; it is reset, as anywhere.)"""

    def read_by_server(text: str) -> float:
        wanted = ("bushu_queue_depth{", 'bushu_requests_total{model="slow",outcome="ok"')
        return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(wanted))

    with ProcessServer(str(slow_package), "--max-batch-size", "16", "--threads", "1") as server:
        with ThreadPoolExecutor(10) as pool:
            futures = [pool.submit(httpx.post, server.url + "/v2/models/slow/infer", json=SLOWER, timeout=60)
                       for _ in range(10)]
            deadline = time.monotonic() + 30
            while read_by_server(httpx.get(server.url + "/metrics").text) < 9:  # the tenth may be running
                assert time.monotonic() < deadline, "requests never reached the server"
            code = server.terminate()
            statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 10
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown


def test_replacing_a_version_under_app_route_load_loses_no_request(vision_package):
    """The app routes prepare tensors in a worker thread before they batch (here: decoding a
    large PNG, tens of milliseconds): a reload in that gap must not leave them a closed batcher
    (before: a 504 at the deadline)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200), np.uint8)).save(buffer, format="PNG")
    image = buffer.getvalue()

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            stop = asyncio.Event()

            async def load_loop():
                statuses = []
                while not stop.is_set():
                    r = await client.post("/v1/models/digits-cnn/predict", content=image,
                                          headers={"Content-Type": "image/png"})
                    statuses.append(r.status_code)
                return statuses

            workers = [asyncio.create_task(load_loop()) for _ in range(8)]
            reloads = []
            for _ in range(5):
                await asyncio.sleep(0.1)
                reloads.append((await client.post("/v2/repository/models/digits-cnn/load")).status_code)
            stop.set()
            return reloads, [s for w in workers for s in await w]

    with ThreadServer([vision_package], ServeSettings(timeout_s=5)) as server:
        reloads, statuses = asyncio.run(scenario(server.url))
    assert reloads == [200] * 5
    assert len(statuses) >= 16 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
