"""HTTP answers for media on the predict route: a video streamed as JSON lines, an image with its
boxes drawn (`?render=png`). The route hands over here by content type or query; the work itself
is in the dataplane (`serve.video`) and the package's post-processing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from bushu.errors import InvalidInput
from bushu.serve.dataplane import DataPlane
from bushu.serve.settings import ServeSettings
from bushu.serve.video import is_video, parse_fps

NDJSON = "application/x-ndjson"


async def video_response(plane: DataPlane, name: str, version: str | None, body: bytes, content_type: str,
                         query: Any, settings: ServeSettings) -> Response | None:
    """A streaming answer for a video body, or None when the body is not a video."""
    if not is_video(content_type):
        return None
    answers = await plane.video(name, version, body, parse_fps(query.get("fps")), settings.max_video_seconds)

    async def lines() -> AsyncIterator[bytes]:
        async for answer in answers:
            yield orjson.dumps(answer) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)


def render_png(image: Any, answer: dict[str, Any]) -> Response:
    """The posted image with each detection's box, score and landmarks drawn on it, as PNG."""
    from PIL import Image, ImageDraw, UnidentifiedImageError

    if "detections" not in answer:
        raise InvalidInput("render=png draws detections; this model gives none")
    try:
        picture = Image.open(io.BytesIO(image)).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInput(f"could not decode the image: {exc}") from None
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 200))
    for det in answer["detections"]:
        draw.rectangle(det["box"], outline=(0, 255, 0), width=width)
        draw.text((det["box"][0] + width, det["box"][1] + width), f"{det['score']:.2f}", fill=(0, 255, 0))
        for point in det.get("landmarks", []):
            r = width + 1
            draw.ellipse([point["x"] - r, point["y"] - r, point["x"] + r, point["y"] + r], fill=(255, 64, 64))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return Response(out.getvalue(), media_type="image/png")
