"""Frames per second through the video route against one HTTP request per frame, same run, same server.

The clip: 30 seconds at 10 fps (300 frames, 512×512, H.264) made from scikit-image's photographs
(faces and face-free scenes, 5 s each). The model: the face detection app (BlazeFace, imported
from mediapipe's TFLite file). The server: `bushu serve` in a subprocess (1 intra-op thread).

- video route: the MP4 posted once to `/v1/models/faces/predict`; the server decodes it, sends
  frames through the batcher in chunks and streams one JSON line per frame. Timed from the first
  byte sent to the last line read.
- per-frame, sequential: the client posts each frame as a JPEG, one after another (keep-alive).
- per-frame, concurrent: the same with 8 requests in flight (the batcher batches them).

The per-frame clients get their frames decoded and JPEG-encoded before the clock starts: only
the HTTP work is timed for them, so the comparison favours the baseline. Each way runs `--rounds`
times; the table shows the median.

    python benchmarks/video_throughput.py [--package DIR] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bushu.bench.process import bushu_serve  # noqa: E402
from fixtures.media import make_video, photo  # noqa: E402

SCENES = ["astronaut", "coffee", "camera", "rocket", "chelsea", "astronaut"]
FPS = 10
console = Console(width=120)


def ensure_package(package: Path | None) -> Path:
    if package is not None:
        return package
    out = Path("out/bench/faces")
    if not (out / "bushu.json").is_file():
        from bushu.apps import face

        console.print(f"importing BlazeFace into {out} …")
        face.package(out, force=True)
    return out


def jpeg_frames(video: bytes) -> list[bytes]:
    import av
    from PIL import Image

    frames = []
    with av.open(io.BytesIO(video)) as container:
        for frame in container.decode(video=0):
            out = io.BytesIO()
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(out, format="JPEG", quality=95)
            frames.append(out.getvalue())
    return frames


def via_video_route(url: str, video: bytes) -> tuple[float, int, int]:
    """(seconds, frames answered, frames with a face)."""
    import orjson

    start = time.perf_counter()
    answered = faces = 0
    with httpx.stream("POST", f"{url}/v1/models/faces/predict", content=video,
                      headers={"content-type": "video/mp4"}, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line:
                answer = orjson.loads(line)
                assert "error" not in answer, answer
                answered += 1
                faces += bool(answer["detections"])
    return time.perf_counter() - start, answered, faces


def per_frame_sequential(url: str, frames: list[bytes]) -> tuple[float, int, int]:
    faces = 0
    with httpx.Client(timeout=60) as client:
        start = time.perf_counter()
        for jpeg in frames:
            response = client.post(f"{url}/v1/models/faces/predict", content=jpeg, headers={"content-type": "image/jpeg"})
            response.raise_for_status()
            faces += bool(response.json()["detections"])
        return time.perf_counter() - start, len(frames), faces


def per_frame_concurrent(url: str, frames: list[bytes], concurrency: int) -> tuple[float, int, int]:
    async def run() -> tuple[float, int, int]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for jpeg in frames:
            queue.put_nowait(jpeg)
        faces = 0

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal faces
            while not queue.empty():
                jpeg = queue.get_nowait()
                response = await client.post(f"{url}/v1/models/faces/predict", content=jpeg,
                                             headers={"content-type": "image/jpeg"})
                response.raise_for_status()
                faces += bool(response.json()["detections"])

        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            start = time.perf_counter()
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
            return time.perf_counter() - start, len(frames), faces

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the server's model")
    args = parser.parse_args()

    package = ensure_package(args.package)
    seconds_each = 30 / len(SCENES)
    video = make_video([photo(n) for n in SCENES], seconds_each, fps=FPS)
    frames = jpeg_frames(video)
    console.print(f"clip: {len(frames)} frames, {len(frames) / FPS:.0f} s at {FPS} fps, {len(video) / 1e6:.1f} MB "
                  f"MP4; per-frame JPEGs {sum(map(len, frames)) / 1e6:.1f} MB")
    ways = {
        "video route (one request, JSON lines)": lambda url: via_video_route(url, video),
        "one request per frame, sequential": lambda url: per_frame_sequential(url, frames),
        f"one request per frame, {args.concurrency} in flight": lambda url: per_frame_concurrent(url, frames, args.concurrency),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    found: dict[str, int] = {}
    with bushu_serve([package], "--threads", str(args.threads)) as server:
        via_video_route(server.url, video)  # warm-up: first sessions, first batches
        for _ in range(args.rounds):
            for name, way in ways.items():
                seconds, answered, faces = way(server.url)
                assert answered == len(frames), (name, answered)
                results[name].append(answered / seconds)
                found[name] = faces
    baseline = statistics.median(results["one request per frame, sequential"])
    table = Table("way", "frames/s (median)", "rounds", "frames with a face", "× sequential per-frame",
                  title=f"video throughput — face detection, {len(frames)} frames")
    for name, rates in results.items():
        median = statistics.median(rates)
        table.add_row(name, f"{median:.1f}", ", ".join(f"{r:.1f}" for r in rates), str(found[name]),
                      f"{median / baseline:.2f}×")
    console.print(table)
    if len(set(found.values())) != 1:
        console.print(f"[red]the ways disagree on how many frames hold a face: {found}[/]")


if __name__ == "__main__":
    main()
