"""The OpenAPI 3 document of every route, served at /v2/openapi.json for clients and fuzzers.

Two layers: the templated routes (`/v2/models/{model}/infer`, `/v1/models/{model}/predict`, …)
with every status each can answer, and, for each model loaded when the document is asked for,
the same routes with the model's name in the path and request bodies cut to that model: its
input names, datatypes and a concrete shape with the data length it implies, its natural
input (`text`/`texts`, `user`/`users` with the id range, `image`) and `search` for embedding
models. A client learns what to send; a fuzzer generates requests that reach the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import bushu

_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
              "FP16", "FP32", "FP64", "BF16", "BYTES"]
_REF = "#/components/schemas/"
_ERROR = {"content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}
#: What each error status means on bushu's routes (`errors.py`, `auth.py`, `batcher.py`, `asgi.py`).
_WHY = {
    "400": "bad request: the body, a tensor or an input does not fit the model",
    "401": "no or unknown bearer token (only when tokens are configured)",
    "403": "the token lacks the scope, or the package is refused (signature, hashes)",
    "404": "no such model or version loaded",
    "408": "the request body did not arrive in time",
    "413": "the body, rows or pixels exceed the server's limits",
    "422": "the package on disk is malformed",
    "429": "rate limit exceeded (Retry-After says when to retry)",
    "503": "overloaded or shutting down (Retry-After says when to retry)",
    "504": "the request's deadline passed before the model answered",
}
_GUARDED = ("401", "403", "429")
_MODEL_ERRORS = ("400", *_GUARDED, "404", "408", "413", "503", "504")


@dataclass(frozen=True)
class ModelDoc:
    """What the document needs to know of one loaded model (built by the app from `LoadedModel`)."""

    name: str
    version: str
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]  # (name, datatype, shape with -1)
    natural: str | None = None  # "text", "user", "image" or None
    n_users: int | None = None
    embeddings: bool = False
    #: Inputs that index an embedding, with how many rows it has (ids are 0 … rows − 1).
    id_ranges: tuple[tuple[str, int], ...] = ()


def model_doc(model: Any) -> ModelDoc:
    """`ModelDoc` of a loaded model (`serve.repository.LoadedModel`): its tensors and natural input."""
    predictor = model.predictor
    text = predictor.tokenizer is not None or predictor.hf_step is not None
    natural = "text" if text else "image" if predictor.images else "user" if predictor.users is not None else None
    ranges = {}
    if predictor.users is not None and "n_users" in predictor.users:
        ranges[predictor.users["input"]] = int(predictor.users["n_users"])
    if predictor.tokenizer is not None:
        ranges[predictor.tokenizer.input] = len(predictor.tokenizer.vocab)
    return ModelDoc(
        name=model.name, version=model.version,
        inputs=tuple((s.name, s.datatype, tuple(s.shape)) for s in model.manifest.inputs),
        natural=natural, n_users=predictor.users.get("n_users") if predictor.users else None,
        embeddings=predictor.hf_step is not None, id_ranges=tuple(ranges.items()),
    )


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"description": _WHY[s], **_ERROR} for s in statuses}


def _ok(schema: str | None = None, description: str = "ok") -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


def _path_params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}} for n in names]


def _json_body(schema: dict[str, Any], *, also_binary: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if also_binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "content": content}


def _data_items(datatype: str, rows: int | None = None) -> dict[str, Any]:
    if rows is not None:
        return {"type": "integer", "minimum": 0, "maximum": rows - 1}
    if datatype == "BOOL":
        return {"type": "boolean"}
    if datatype == "BYTES":
        return {"type": "string", "maxLength": 64}
    if datatype.startswith(("FP", "BF")):
        return {"type": "number", "minimum": -1e4, "maximum": 1e4}
    return {"type": "integer", "minimum": 0, "maximum": 1}  # 0 and 1 are valid for any id or flag input


def _tensor_for(name: str, datatype: str, shape: tuple[int, ...], rows: int | None = None) -> dict[str, Any]:
    """One input of this model, batch 1 and every other dynamic axis 4: names, type and data length agree."""
    concrete = [1 if i == 0 and d == -1 else (4 if d == -1 else d) for i, d in enumerate(shape)]
    size = math.prod(concrete)
    return {"type": "object", "required": ["name", "datatype", "shape", "data"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "enum": [name]}, "datatype": {"type": "string", "enum": [datatype]},
                           "shape": {"type": "array", "enum": [concrete]},
                           "data": {"type": "array", "items": _data_items(datatype, rows), "minItems": size, "maxItems": size}}}


def _model_paths(model: ModelDoc) -> dict[str, Any]:
    """The routes of one loaded model, its name in the path and its own request bodies."""
    base = f"/v2/models/{model.name}"
    rows = dict(model.id_ranges)
    inputs = [_tensor_for(*spec, rows.get(spec[0])) for spec in model.inputs]
    infer_body = {"type": "object", "required": ["inputs"], "additionalProperties": False, "properties": {
        "id": {"type": "string", "maxLength": 32},
        "inputs": {"type": "array", "items": {"oneOf": inputs} if len(inputs) > 1 else inputs[0],
                   "minItems": len(inputs), "maxItems": len(inputs), "uniqueItems": True}}}
    infer = {"post": {"summary": f"Run {model.name}", "requestBody": _json_body(infer_body),
                      "responses": {"200": _ok("InferResponse"), **_errors(*_MODEL_ERRORS)}}}
    paths: dict[str, Any] = {
        base: {"get": {"summary": f"{model.name} metadata", "responses": {"200": _ok("ModelMetadata"),
                                                                          **_errors(*_GUARDED, "404")}}},
        base + "/ready": {"get": {"summary": f"{model.name} ready", "responses": _status_only()}},
        base + "/infer": infer,
    }
    natural = _natural_body(model)
    if natural is not None:
        paths[f"/v1/models/{model.name}/predict"] = {"post": {
            "summary": f"Predict with {model.name} from natural inputs", "requestBody": natural,
            "responses": {"200": _ok(description="the prediction"), **_errors(*_MODEL_ERRORS)}}}
    if model.embeddings:
        paths[f"/v1/models/{model.name}/search"] = {"post": {
            "summary": f"Rank a corpus by cosine to a query with {model.name}",
            "requestBody": _json_body({"$ref": _REF + "SearchRequest"}),
            "responses": {"200": _ok("SearchResponse"), **_errors(*_MODEL_ERRORS)}}}
    return paths


def _natural_body(model: ModelDoc) -> dict[str, Any] | None:
    k = {"type": "integer", "minimum": 1, "maximum": 50}
    text = {"type": "string", "minLength": 1, "maxLength": 200}
    if model.natural == "text":
        return _json_body({"oneOf": [
            {"type": "object", "required": ["text"], "additionalProperties": False, "properties": {"text": text, "k": k}},
            {"type": "object", "required": ["texts"], "additionalProperties": False,
             "properties": {"texts": {"type": "array", "items": text, "minItems": 1, "maxItems": 8}, "k": k}}]})
    if model.natural == "user":
        user = {"type": "integer", "minimum": 0, **({"maximum": model.n_users - 1} if model.n_users else {})}
        return _json_body({"oneOf": [
            {"type": "object", "required": ["user"], "additionalProperties": False, "properties": {"user": user, "k": k}},
            {"type": "object", "required": ["users"], "additionalProperties": False,
             "properties": {"users": {"type": "array", "items": user, "minItems": 1, "maxItems": 8}, "k": k}}]})
    if model.natural == "image":
        return {"required": True, "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object", "required": ["image"], "additionalProperties": False,
                                            "properties": {"image": {"type": "string", "format": "byte"}, "k": k}}}}}
    return None


def _status_only() -> dict[str, Any]:
    return {"200": {"description": "true"}, "400": {"description": "false"}}


def _generic_paths() -> dict[str, Any]:
    infer = {"summary": "Run inference (JSON tensors, or the binary tensor data extension)",
             "requestBody": _json_body({"$ref": _REF + "InferRequest"}, also_binary=True),
             "responses": {"200": _ok("InferResponse"), **_errors(*_MODEL_ERRORS)}}
    predict = {"summary": "Predict from natural inputs: image bytes, text(s), user id(s)",
               "requestBody": {"required": True, "content": {
                   "application/json": {"schema": {"$ref": _REF + "PredictRequest"}},
                   "image/png": {"schema": {"type": "string", "format": "binary"}}}},
               "responses": {"200": _ok(description="the prediction"), **_errors(*_MODEL_ERRORS)}}
    admin = {**_errors(*_GUARDED)}
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"summary": "Server live", "responses": _status_only()}},
        "/v2/health/ready": {"get": {"summary": "Server ready", "responses": _status_only()}},
        "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _ok("ServerMetadata"), **_errors(*_GUARDED)}}},
        "/v2/openapi.json": {"get": {"summary": "This document", "responses": {"200": _ok(description="OpenAPI 3")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **admin}}},
        "/v2/repository/index": {"post": {"summary": "Models in the repository", "responses": {
            "200": _ok("RepositoryIndex"), **admin}}},
        "/v2/repository/models/{model}/load": {"post": {
            "summary": "Load or reload a model", "parameters": _path_params("model"),
            "responses": {"200": _ok(description="loaded"), **_errors("400", *_GUARDED, "404", "422")}}},
        "/v2/repository/models/{model}/unload": {"post": {
            "summary": "Unload a model", "parameters": _path_params("model"),
            "responses": {"200": _ok(description="unloaded"), **_errors("400", *_GUARDED, "404")}}},
        "/v1/models/{model}/predict": {"post": {**predict, "parameters": _path_params("model")}},
        "/v1/models/{model}/versions/{version}/predict": {"post": {**predict, "parameters": _path_params("model", "version")}},
        "/v1/models/{model}/search": {"post": {
            "summary": "Rank a corpus by cosine to a query (embedding models)", "parameters": _path_params("model"),
            "requestBody": _json_body({"$ref": _REF + "SearchRequest"}),
            "responses": {"200": _ok("SearchResponse"), **_errors(*_MODEL_ERRORS)}}},
    }
    for prefix, names in (("/v2/models/{model}", ("model",)), ("/v2/models/{model}/versions/{version}", ("model", "version"))):
        paths[prefix] = {"get": {"summary": "Model metadata", "parameters": _path_params(*names),
                                 "responses": {"200": _ok("ModelMetadata"), **_errors(*_GUARDED, "404")}}}
        paths[prefix + "/ready"] = {"get": {"summary": "Model ready", "parameters": _path_params(*names),
                                            "responses": _status_only()}}
        paths[prefix + "/infer"] = {"post": {**infer, "parameters": _path_params(*names)}}
    paths["/v1/models/{model}/explain"] = {"post": {  # serve/explain_routes.py
        "summary": "The served answer to natural inputs, with Captum attributions from the source module",
        "parameters": _path_params("model"), "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}}, "image/png": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": _ok(description="the answer and its attributions"), **_errors(*_MODEL_ERRORS)}}}
    paths["/v1/catalog"] = {"get": {"summary": "Loaded models and how to try them (the playground's list)",
                                   "responses": {"200": _ok(description="ok"), **_errors(*_GUARDED)}}}
    paths["/v1/stats"] = {"get": {"summary": "Request-latency histogram (the playground's live panel)",
                                  "responses": {"200": _ok(description="ok"), **_errors(*_GUARDED)}}}
    return paths


def _schemas() -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": _DATATYPES},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Tensor": tensor,
        "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": {"$ref": _REF + "Tensor"}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {"type": "object"}}}}}},
        "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"$ref": _REF + "Tensor"}}}},
        "PredictRequest": {"type": "object", "properties": {
            "image": {"type": "string", "format": "byte"}, "text": {"type": "string"},
            "texts": {"type": "array", "items": {"type": "string"}}, "user": {"type": "integer"},
            "users": {"type": "array", "items": {"type": "integer"}}, "k": {"type": "integer", "minimum": 1}}},
        "SearchRequest": {"type": "object", "required": ["query", "corpus"], "properties": {
            "query": {"type": "string", "maxLength": 200},
            "corpus": {"type": "array", "items": {"type": "string", "maxLength": 200}, "minItems": 1, "maxItems": 16},
            "k": {"type": "integer", "minimum": 1}}},
        "SearchResponse": {"type": "object", "required": ["results"], "properties": {"results": {
            "type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "text": {"type": "string"}, "score": {"type": "number"}}}}}},
        "RepositoryIndex": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]}}}},
        "ServerMetadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "ModelMetadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": _REF + "Tensor"}},
            "outputs": {"type": "array", "items": {"$ref": _REF + "Tensor"}}}},
    }


@lru_cache(maxsize=8)
def openapi_document(models: Sequence[ModelDoc] = ()) -> dict[str, Any]:
    """The document for a server holding `models` (a tuple, so that it caches)."""
    paths = _generic_paths()
    for model in sorted(models, key=lambda m: (m.name, m.version)):
        for path, item in _model_paths(model).items():
            paths.setdefault(path, item)
    return {
        "openapi": "3.0.3",
        "info": {"title": "bushu — Open Inference Protocol v2 and app routes", "version": bushu.__version__},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
