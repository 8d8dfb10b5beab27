"""App routes: natural inputs in (image bytes, text, user ids), natural outputs out.

`POST /v1/models/{m}/predict` takes what an application has — an image as the body, or JSON
`{"image": base64}`, `{"text": ...}`, `{"texts": [...]}`, `{"user": id}`, `{"users": [...]}`,
optionally with `"k"` — turns it into tensors with the package's declared pre-processing
(outside the batched call), sends them through the same dynamic batcher as V2 inference, and
answers with the declared post-processing: label, probabilities and top-k for classifiers,
unseen items with scores for recommenders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bushu.errors import InvalidInput
from bushu.package.manifest import Manifest
from bushu.runtime import hf_text
from bushu.runtime.detection import place_detections
from bushu.runtime.postprocessing import Postprocessor, check_ids
from bushu.runtime.processing import preprocess
from bushu.runtime.text import STEP_KIND as TOKENIZE
from bushu.runtime.text import Tokenizer


@dataclass
class NaturalRequest:
    items: list[Any]
    #: Several items were sent as a list: answer with a list.
    batched: bool = False
    k: int | None = None


def _listed(doc: dict[str, Any], key: str) -> list[Any]:
    values = doc[key]
    if not isinstance(values, list) or not values:
        raise InvalidInput(f"'{key}' must be a non-empty list")
    return values


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
    for single, many in (("text", "texts"), ("user", "users")):
        if many in doc:
            return NaturalRequest(_listed(doc, many), batched=True, k=k)
        if single in doc:
            return NaturalRequest([doc[single]], k=k)
    raise InvalidInput("expected one of 'image', 'text', 'texts', 'user', 'users' in the request")


class Predictor:
    """A package's natural input and output, built once when the package is loaded."""

    def __init__(self, manifest: Manifest, root: Path) -> None:
        self.manifest = manifest
        self.post = Postprocessor.for_package(manifest, root)
        self.root = root
        kinds = {s.kind: s for s in manifest.preprocessing}
        self.tokenizer = Tokenizer.from_manifest(manifest, root) if TOKENIZE in kinds else None
        self.hf_step = kinds.get(hf_text.STEP_KIND)
        self.images = "decode_image" in kinds
        self.users = next((s.params for s in manifest.postprocessing if s.kind == "top_k_unseen"), None)

    def tensors(self, request: NaturalRequest) -> dict[str, np.ndarray]:
        name = self.manifest.inputs[0].name
        if self.tokenizer is not None:
            return {self.tokenizer.input: self.tokenizer.encode_batch(request.items)}
        if self.hf_step is not None:
            return hf_text.tokenize(request.items, self.hf_step, self.root)
        if self.images:
            return {name: np.stack([preprocess(item, self.manifest.preprocessing) for item in request.items])}
        if self.users is not None:
            if not all(isinstance(u, int) and not isinstance(u, bool) for u in request.items):
                raise InvalidInput("user ids must be integers")
            return {self.users["input"]: check_ids(request.items, self.users["n_users"])}
        raise InvalidInput(f"model {self.manifest.name!r} declares no natural input; use the V2 infer route")

    def answers(self, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                k: int | None) -> list[dict[str, Any]]:
        state = self.post(outputs, inputs, k=k)
        rows = len(next(iter(outputs.values())))
        labels = self.manifest.labels
        results = []
        for i in range(rows):
            result: dict[str, Any] = {}
            if "labels" in state:
                top = [{"label": str(lb), "score": float(s)} for lb, s in zip(state["labels"][i], state["scores"][i])]
                result.update(label=top[0]["label"], top_k=top)
            if "probabilities" in state and labels:
                result["probabilities"] = {lb: float(p) for lb, p in zip(labels, state["probabilities"][i])}
            if "detections" in state:
                result["detections"] = state["detections"][i]
            if "items" in state:
                result["items"] = [{"item": int(it), "score": float(s)}
                                   for it, s in zip(state["items"][i], state["item_scores"][i])]
            if not result:
                result = {name: value[i].tolist() for name, value in outputs.items()}
            results.append(result)
        return results


async def predict(model: Any, request: NaturalRequest) -> list[dict[str, Any]]:
    """`model` is a loaded model (`serve.repository.LoadedModel`) with its `Predictor`."""
    predictor: Predictor = model.predictor
    inputs = await asyncio.to_thread(predictor.tensors, request)
    wanted = ["embedding"] if predictor.hf_step is not None else None  # not the hidden states
    outputs = await model.batcher.infer(inputs, wanted)
    results = predictor.answers(outputs, inputs, request.k)
    return place_detections(predictor.manifest, request.items, results)


async def search(model: Any, body: bytes) -> dict[str, Any]:
    """Semantic search: `{"query": str, "corpus": [str, ...], "k": int}` → the k corpus texts
    nearest the query by cosine of the package's normalised embeddings."""
    predictor: Predictor = model.predictor
    if predictor.hf_step is None:
        raise InvalidInput(f"model {model.name!r} gives no text embeddings; search needs an embedding model")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"expected a JSON object: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("query"), str):
        raise InvalidInput("search needs a 'query' string and a 'corpus' list of strings")
    corpus = doc.get("corpus")
    if not isinstance(corpus, list) or not corpus or not all(isinstance(t, str) for t in corpus):
        raise InvalidInput("'corpus' must be a non-empty list of strings")
    k = doc.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInput("'k' must be a positive integer")
    name = "embedding"
    texts = [doc["query"], *corpus]
    inputs = await asyncio.to_thread(predictor.tensors, NaturalRequest(texts, batched=True))
    vectors = (await model.batcher.infer(inputs, [name]))[name].astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return {"results": [{"index": int(i), "text": corpus[i], "score": float(scores[i])} for i in order]}
