"""App routes: natural inputs in (image bytes, text, ids), natural outputs out.

`POST /v1/models/{m}/predict` decodes what an application has — an image as the body, or JSON
`{"image": base64}`, `{"text": ...}`, `{"texts": [...]}` — runs the package's declared
pre-processing outside the batched call, sends the tensors through the same dynamic batcher as
V2 inference, and answers with the declared post-processing (label, probabilities, top-k).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bushu.errors import InvalidInput
from bushu.runtime.postprocessing import postprocess
from bushu.runtime.processing import preprocess
from bushu.serve.repository import LoadedModel


@dataclass
class NaturalRequest:
    items: list[Any]
    #: Several items were sent as a list: answer with a list.
    batched: bool = False
    k: int | None = None


def natural_inputs(body: bytes, content_type: str) -> NaturalRequest:
    """Decode what an application sent into the items to predict on."""
    if not body:
        raise InvalidInput("the request body is empty")
    if content_type.startswith(("image/", "application/octet-stream")):
        return NaturalRequest([body])
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"expected image bytes or a JSON object: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("expected a JSON object")
    k = doc.get("k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise InvalidInput("'k' must be a positive integer")
    if "image" in doc:
        try:
            return NaturalRequest([base64.b64decode(doc["image"], validate=True)], k=k)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidInput("'image' must be base64-encoded image bytes") from None
    if "texts" in doc:
        texts = doc["texts"]
        if not isinstance(texts, list) or not texts:
            raise InvalidInput("'texts' must be a non-empty list of strings")
        return NaturalRequest(texts, batched=True, k=k)
    if "text" in doc:
        return NaturalRequest([doc["text"]], k=k)
    raise InvalidInput("expected one of 'image', 'text', 'texts' in the request")


async def predict(model: LoadedModel, request: NaturalRequest) -> list[dict[str, Any]]:
    manifest = model.manifest
    if not manifest.preprocessing:
        raise InvalidInput(f"model {model.name!r} declares no pre-processing; use the V2 infer route")
    if len(manifest.inputs) != 1:
        raise InvalidInput(f"model {model.name!r} takes {len(manifest.inputs)} tensors; predict needs one")
    items = request.items
    tensors = await asyncio.to_thread(lambda: np.stack([preprocess(item, manifest.preprocessing) for item in items]))
    outputs = await model.batcher.infer({manifest.inputs[0].name: tensors})
    return postprocess(manifest, outputs, overrides={"k": request.k} if request.k else None)
