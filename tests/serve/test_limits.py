"""Limits with clear answers: rows per request, queue bytes, body read time, image pixels,
search corpus size, and the memory rate limiting may use."""

import asyncio
import json
import socket
import struct
import time
import zlib

import httpx
import numpy as np
import pytest

import bushu
from bushu.serve.auth import AccessControl
from bushu.serve.batcher import Batcher
from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


def rows(n, width=6):
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [n, width], "data": [0.25] * (n * width)}]}


def test_a_request_with_more_rows_than_allowed_is_413_not_one_huge_batch(tiny_package):
    with ThreadServer([tiny_package], ServeSettings(max_batch_size=4)) as server:
        fits = httpx.post(server.url + "/v2/models/tiny/infer", json=rows(4))
        too_many = httpx.post(server.url + "/v2/models/tiny/infer", json=rows(5))
    with ThreadServer([tiny_package], ServeSettings(max_batch_size=4, max_request_rows=8)) as server:
        raised = httpx.post(server.url + "/v2/models/tiny/infer", json=rows(8))
    assert fits.status_code == 200 and raised.status_code == 200
    assert too_many.status_code == 413
    assert too_many.json()["error"] == "the request has 5 rows; tiny takes at most 4 per request (send them in several requests)"


def test_the_queue_is_bounded_in_bytes_too(slow_package):
    """Six 64 KiB requests at once to a slow model with room for two in the queue's bytes:
    the rest are told to come back (503 + Retry-After); one request bigger than the whole
    queue can never fit, so it is 413."""
    one = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [16, 1024], "data": [1.0] * 16 * 1024}]}
    settings = ServeSettings(max_batch_size=16, max_request_rows=64, threads=1, max_queue_bytes=2 * 16 * 1024 * 4)

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v2/models/slow/infer", json=one) for _ in range(6)))

    huge = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [48, 1024], "data": [1.0] * 48 * 1024}]}
    with ThreadServer([slow_package], settings) as server:
        responses = asyncio.run(scenario(server.url))
        too_big = httpx.post(server.url + "/v2/models/slow/infer", json=huge)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1 and set(statuses) == {200, 503}, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert "bytes" in refused.json()["error"] and int(refused.headers["retry-after"]) >= 1
    assert too_big.status_code == 413 and "the queue holds at most" in too_big.json()["error"]


def half_a_body(url: str, path: str) -> tuple[bytes, float]:
    """Send headers promising 1000 bytes and only 10 of them; read until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 1000\r\n\r\n".encode() + b'{"inputs":')
        received = b""
        while chunk := sock.recv(65536):  # b"" once the server has closed the connection
            received += chunk
    return received, time.monotonic() - start


@pytest.mark.parametrize("path", ["/v2/models/tiny/infer", "/v1/models/tiny/predict"])
def test_a_slow_client_gets_408_and_loses_its_connection(tiny_package, path):
    with ThreadServer([tiny_package], ServeSettings(body_timeout_s=0.5)) as server:
        received, took = half_a_body(server.url, path)
        still_serving = httpx.post(server.url + "/v2/models/tiny/infer", json=rows(1))
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"error": "the request body did not arrive within 0.5 s"}
    assert took < 10 and still_serving.status_code == 200


def png_bomb(width: int, height: int) -> bytes:
    """A real, valid 1-bit PNG of width×height white pixels: tens of kilobytes that decode to
    hundreds of megapixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_a_decompression_bomb_image_is_413(vision_package):
    bomb = png_bomb(20_000, 20_000)  # 400 Mpx: past Pillow's own bomb limit (DecompressionBombError)
    big = png_bomb(3000, 3000)  # 9 Mpx: under Pillow's limit, over this server's
    assert len(bomb) < 200_000
    with ThreadServer([vision_package], ServeSettings(max_image_pixels=2000 * 2000)) as server:
        answers = [httpx.post(server.url + "/v1/models/digits-cnn/predict", content=image,
                              headers={"Content-Type": "image/png"}, timeout=60) for image in (bomb, big)]
        fine = httpx.post(server.url + "/v1/models/digits-cnn/predict", content=png_bomb(64, 64),
                          headers={"Content-Type": "image/png"})
    assert [a.status_code for a in answers] == [413, 413], [a.text for a in answers]
    assert "too large to decode" in answers[0].json()["error"]
    assert answers[1].json()["error"] == "the image is 3000x3000 = 9000000 pixels; this server decodes at most 4000000 pixels"
    assert fine.status_code == 200 and fine.json()["label"] in [str(d) for d in range(10)]


def test_rate_limit_buckets_are_evicted(tiny_package):
    """Ten thousand client addresses pass through the real middleware: the buckets it keeps stay
    bounded, refilled ones are forgotten, and a client over its limit is still refused."""
    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call(guard, address):
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": "/v2/models/tiny/infer", "headers": [], "client": (address, 1)}
        await guard(scope, None, send)
        return sent[0]["status"]

    async def scenario():
        bounded = AccessControl(ok, [], anonymous_rate=0.001, anonymous_burst=1, max_buckets=100)
        statuses = [await call(bounded, f"10.0.{i // 256}.{i % 256}") for i in range(10_000)]
        again = await call(bounded, "10.0.39.15")  # the last client, still within its window
        refilling = AccessControl(ok, [], anonymous_rate=1e9, anonymous_burst=1)
        for i in range(10_000):
            await call(refilling, f"10.1.{i // 256}.{i % 256}")
        return statuses, again, len(bounded.gate.buckets), len(refilling.gate.buckets)

    statuses, again, kept, kept_refilling = asyncio.run(scenario())
    assert statuses == [200] * 10_000 and again == 429
    assert kept == 100  # the cap
    assert kept_refilling <= 2  # buckets that refilled at once were forgotten long before the cap


def test_closing_a_batcher_never_blocks_the_event_loop(slow_package):
    """A batch past its deadline is still running when the batcher closes: the thread pool and
    the model are released off the loop, which keeps ticking meanwhile."""
    model = bushu.load(slow_package, threads=1)
    x = np.ones((2048, 1024), np.float32)  # about a second of compute on one core

    async def scenario():
        batcher = Batcher([model], max_batch_size=2048, timeout=0.05)
        with pytest.raises(Exception, match="no answer within"):
            await batcher.infer({"x": x})  # answered 504; its batch runs on
        gaps, last, stop = [], time.monotonic(), asyncio.Event()

        async def tick():
            nonlocal last
            while not stop.is_set():
                await asyncio.sleep(0.005)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        ticker = asyncio.create_task(tick())
        start = time.monotonic()
        await batcher.close()
        took = time.monotonic() - start
        stop.set()
        await ticker
        return took, max(gaps)

    took, worst_gap = asyncio.run(scenario())
    assert took > 0.2, f"the batch had finished before close ({took:.3f} s): nothing to show"
    assert worst_gap < 0.15, f"the loop stalled {worst_gap:.3f} s while the batcher closed"
