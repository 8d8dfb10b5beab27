"""Video through an image model: decode (PyAV), sample at `fps`, batch the frames, one answer per frame.

A posted MP4/WebM is opened and its first frames decoded before anything is answered, so a
file that is not a video answers 400 and one longer than the limit answers 413. Then frames
are decoded in a worker thread a chunk at a time while the previous chunk is in the model:
each chunk is one request of many rows through the model's dynamic batcher (the same
pre- and post-processing as a still image), and every frame's answer — its index, timestamp
and detections or labels — is yielded as soon as its chunk is done, in frame order.
"""

from __future__ import annotations

import asyncio
import io
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from bushu.errors import BushuError, InvalidInput
from bushu.serve.asgi import PayloadTooLarge
from bushu.serve.predict import NaturalRequest, predict

VIDEO_TYPES = ("video/", "application/x-matroska")
#: Frames per model request: enough to batch well, few enough to answer early.
CHUNK = 16
#: Chunks in the model at once while the next one decodes.
IN_FLIGHT = 3


def is_video(content_type: str) -> bool:
    return content_type.startswith(VIDEO_TYPES)


def parse_fps(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        fps = float(value)
    except ValueError:
        raise InvalidInput(f"fps={value!r} is not a number") from None
    if not 0 < fps <= 240:
        raise InvalidInput(f"fps={value} must be above 0 and at most 240")
    return fps


class VideoFrames:
    """The sampled frames of one video in memory, as (index, seconds, PIL image), read in chunks."""

    def __init__(self, data: bytes, fps: float | None, max_seconds: float) -> None:
        try:
            import av
        except ImportError:
            raise BushuError("this server cannot decode video: pip install 'bushu[video]' (PyAV)", status=415) from None

        self.max_seconds = max_seconds
        try:
            self._container = av.open(io.BytesIO(data), mode="r")
        except (av.error.FFmpegError, ValueError) as exc:
            raise InvalidInput(f"could not decode the video: {exc}") from None
        if not self._container.streams.video:
            self._container.close()
            raise InvalidInput("the file holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        declared = self._container.duration / 1_000_000 if self._container.duration else None
        if declared is not None and declared > max_seconds:
            self._container.close()
            raise PayloadTooLarge(f"the video lasts {declared:.1f} s; the limit is {max_seconds:g} s")
        self._step = 1.0 / fps if fps else 0.0
        self._next = 0.0
        self._count = 0
        self._frames = self._decode()

    def _decode(self) -> Iterator[tuple[int, float, Any]]:
        import av

        try:
            for frame in self._container.decode(self._stream):
                seconds = float(frame.time) if frame.time is not None else 0.0
                if seconds > self.max_seconds:
                    raise PayloadTooLarge(f"the video runs past the limit of {self.max_seconds:g} s")
                if seconds + 1e-6 < self._next:
                    continue
                self._next = (self._next + self._step) if self._step else seconds
                while self._step and self._next <= seconds:
                    self._next += self._step
                yield self._count, seconds, frame.to_image()
                self._count += 1
        except av.error.FFmpegError as exc:
            raise InvalidInput(f"could not decode the video: {exc}") from None

    def read(self, n: int) -> list[tuple[int, float, Any]]:
        """Up to `n` more sampled frames; an empty list at the end (worker thread)."""
        chunk = []
        for item in self._frames:
            chunk.append(item)
            if len(chunk) == n:
                break
        return chunk

    def close(self) -> None:
        self._container.close()


async def open_video(data: bytes, fps: float | None, max_seconds: float) -> tuple[VideoFrames, list]:
    """Open and decode the first chunk now, so bad files are refused before the answer starts."""
    frames = await asyncio.to_thread(VideoFrames, data, fps, max_seconds)
    try:
        first = await asyncio.to_thread(frames.read, CHUNK)
    except BaseException:
        frames.close()
        raise
    if not first:
        frames.close()
        raise InvalidInput("the video has no frames to decode")
    return frames, first


Predict = Callable[[Any, NaturalRequest], Awaitable[list[dict[str, Any]]]]


async def frame_answers(model: Any, frames: VideoFrames, first: list, run: Predict = predict) -> AsyncIterator[dict[str, Any]]:
    """One answer per sampled frame, in order; an error ends the stream with an `error` line.

    `run` answers one chunk (the dataplane passes its counted `predict`, so chunks show in metrics).
    """
    pending: deque[tuple[list, asyncio.Task]] = deque()
    chunk = first
    reading: asyncio.Future | None = None
    try:
        while True:
            if chunk:
                request = NaturalRequest([image for _, _, image in chunk], batched=True)
                pending.append((chunk, asyncio.ensure_future(run(model, request))))
            while pending and (len(pending) >= IN_FLIGHT or not chunk or pending[0][1].done()):
                done_chunk, task = pending.popleft()
                for (index, seconds, _), answer in zip(done_chunk, await task):
                    yield {"frame": index, "time": round(seconds, 3), **answer}
            if not chunk:
                return
            reading = asyncio.ensure_future(asyncio.to_thread(frames.read, CHUNK))
            chunk = await reading
    except BushuError as exc:
        yield {"error": str(exc), "status": exc.status}
    finally:
        for _, task in pending:
            task.cancel()
        if reading is not None and not reading.done():  # the client left mid-read: close after it
            reading.add_done_callback(lambda _: frames.close())
        else:
            frames.close()
