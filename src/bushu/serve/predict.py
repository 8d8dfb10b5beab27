"""App routes: natural inputs in (image bytes, text, user ids), natural outputs out.

`POST /v1/models/{m}/predict` takes what an application has — an image as the body, or JSON
`{"image": base64}`, `{"text": ...}`, `{"texts": [...]}`, `{"user": id}`, `{"users": [...]}`,
optionally with `"k"` — turns it into tensors with the package's declared pre-processing
(outside the batched call), sends them through the same dynamic batcher as V2 inference, and
answers with the declared post-processing: label, probabilities and top-k for classifiers,
unseen items with scores for recommenders.

Decoding a body into a `NaturalRequest` or `SearchRequest` is the HTTP layer's step
(`natural_inputs`, `search_request`); `predict` and `search` take the decoded requests, so any
front calls them the same way. Images are opened within the server's pixel limit before they
are decoded: a small file that would decompress to a huge image is refused with 413.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bushu.errors import InvalidInput
from bushu.package.manifest import Manifest
from bushu.runtime import hf_text
from bushu.runtime.base import FileReader, disk_reader
from bushu.runtime.detection import place_detections
from bushu.runtime.postprocessing import Postprocessor, check_ids
from bushu.runtime.processing import preprocess
from bushu.runtime.text import STEP_KIND as TOKENIZE
from bushu.runtime.text import Tokenizer
from bushu.serve.asgi import PayloadTooLarge


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


@dataclass
class SearchRequest:
    query: str
    corpus: list[str]
    k: int = 5


def search_request(body: bytes) -> SearchRequest:
    """Decode `{"query": str, "corpus": [str, ...], "k": int}`."""
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
    return SearchRequest(doc["query"], corpus, k)


#: Images larger than this many pixels are refused (413) unless the server says otherwise.
MAX_IMAGE_PIXELS = 4096 * 4096


def open_image(data: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> Any:
    """A PIL image of `data`, decoded only once its header shows at most `max_pixels` pixels
    (a frame the video route decoded is already an image: it is checked the same way)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(data, Image.Image):
        if data.width * data.height > max_pixels:
            raise PayloadTooLarge(f"the frame is {data.width}x{data.height} pixels; "
                                  f"this server decodes at most {max_pixels} pixels")
        return data

    with warnings.catch_warnings():  # Pillow's own bomb warning: this limit is the one that rules
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"the image is too large to decode: {exc}") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidInput(f"could not decode the image: {exc}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(f"the image is {width}x{height} = {width * height} pixels; "
                                  f"this server decodes at most {max_pixels} pixels")
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidInput(f"could not decode the image: {exc}") from None
    return image


class Predictor:
    """A package's natural input and output, built once when the package is loaded."""

    def __init__(self, manifest: Manifest, root: Path, max_image_pixels: int = MAX_IMAGE_PIXELS,
                 read: FileReader | None = None) -> None:
        """`read` reads the package's files for its steps (the server passes `PackageFiles.read`:
        the hashed bytes, decrypted in memory); without it they are read from `root`."""
        self.manifest = manifest
        self.max_image_pixels = max_image_pixels
        read = read or disk_reader(root)
        self.post = Postprocessor.for_package(manifest, read)
        self.root = root
        kinds = {s.kind: s for s in manifest.preprocessing}
        self.tokenizer = Tokenizer.from_manifest(manifest, read) if TOKENIZE in kinds else None
        self.hf_step = kinds.get(hf_text.STEP_KIND)
        #: parsed once here, not from tokenizer.json on every request
        self.hf_tokenizer = hf_text.load_tokenizer(self.hf_step, read) if self.hf_step is not None else None
        self.images = "decode_image" in kinds
        self.users = next((s.params for s in manifest.postprocessing if s.kind == "top_k_unseen"), None)

    def tensors(self, request: NaturalRequest) -> dict[str, np.ndarray]:
        name = self.manifest.inputs[0].name
        if self.tokenizer is not None:
            return {self.tokenizer.input: self.tokenizer.encode_batch(request.items)}
        if self.hf_step is not None:
            return hf_text.tokenize(request.items, self.hf_step, self.hf_tokenizer)
        if self.images:
            return {name: np.stack([preprocess(open_image(item, self.max_image_pixels), self.manifest.preprocessing)
                                    for item in request.items])}
        if self.users is not None:
            if not all(isinstance(u, int) and not isinstance(u, bool) for u in request.items):
                raise InvalidInput("user ids must be integers")
            return {self.users["input"]: check_ids(request.items, self.users["n_users"], input=self.users["input"])}
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


async def search(model: Any, request: SearchRequest) -> dict[str, Any]:
    """Semantic search: the k corpus texts nearest the query by cosine of the package's
    normalised embeddings. The texts are embedded in requests of at most the batcher's
    `max_request_rows` rows each (a corpus is split; its size is limited by the caller)."""
    predictor: Predictor = model.predictor
    if predictor.hf_step is None:
        raise InvalidInput(f"model {model.name!r} gives no text embeddings; search needs an embedding model")
    name = "embedding"
    texts = [request.query, *request.corpus]
    step = model.batcher.max_request_rows

    async def embed(chunk: list[str]) -> np.ndarray:
        inputs = await asyncio.to_thread(predictor.tensors, NaturalRequest(chunk, batched=True))
        return (await model.batcher.infer(inputs, [name]))[name]

    parts = await asyncio.gather(*(embed(texts[i : i + step]) for i in range(0, len(texts), step)))
    vectors = np.concatenate(parts).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores, kind="stable")[: request.k]
    return {"results": [{"index": int(i), "text": request.corpus[i], "score": float(scores[i])} for i in order]}
