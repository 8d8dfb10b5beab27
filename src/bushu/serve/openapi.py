"""The OpenAPI 3 document of the V2 routes, served at /v2/openapi.json for clients and fuzzers."""

from __future__ import annotations

from functools import cache
from typing import Any

import bushu

_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
              "FP16", "FP32", "FP64", "BF16", "BYTES"]
_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_STATUS_ONLY = {"200": {"description": "true"}, "400": {"description": "false"}}


def _json_response(schema: str) -> dict[str, Any]:
    return {"description": "ok", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


@cache
def openapi_document() -> dict[str, Any]:
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {}},
        },
    }
    infer_op = {
        "summary": "Run inference (JSON tensors, or the binary tensor data extension)",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }},
        "responses": {"200": _json_response("InferResponse"), "400": _ERROR, "404": _ERROR, "413": _ERROR,
                      "503": _ERROR, "504": _ERROR},
    }
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"summary": "Server live", "responses": _STATUS_ONLY}},
        "/v2/health/ready": {"get": {"summary": "Server ready", "responses": _STATUS_ONLY}},
        "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json_response("ServerMetadata")}}},
        "/v2/repository/index": {"post": {"summary": "Models in the repository", "responses": {"200": {"description": "ok"}}}},
        "/v2/repository/models/{model}/load": {"post": {"summary": "Load or reload a model", "parameters": _params("model"),
                                                        "responses": {"200": {"description": "loaded"}, "404": _ERROR}}},
        "/v2/repository/models/{model}/unload": {"post": {"summary": "Unload a model", "parameters": _params("model"),
                                                          "responses": {"200": {"description": "unloaded"}, "404": _ERROR}}},
    }
    for prefix, names in (("/v2/models/{model}", ("model",)), ("/v2/models/{model}/versions/{version}", ("model", "version"))):
        paths[prefix] = {"get": {"summary": "Model metadata", "parameters": _params(*names),
                                 "responses": {"200": _json_response("ModelMetadata"), "404": _ERROR}}}
        paths[prefix + "/ready"] = {"get": {"summary": "Model ready", "parameters": _params(*names), "responses": _STATUS_ONLY}}
        paths[prefix + "/infer"] = {"post": {**infer_op, "parameters": _params(*names)}}
    paths["/v1/models/{model}/explain"] = {"post": {  # serve/explain_routes.py; the playground's reads below
        "summary": "The served answer to natural inputs, with Captum attributions from the source module",
        "parameters": _params("model"), "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}}, "image/png": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "ok"}, "400": _ERROR, "404": _ERROR, "413": _ERROR, "503": _ERROR}}}
    paths["/v1/models"] = {"get": {"summary": "Loaded models and how to try them", "responses": {"200": {"description": "ok"}}}}
    paths["/v1/stats"] = {"get": {"summary": "Request-latency histogram", "responses": {"200": {"description": "ok"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "bushu — Open Inference Protocol v2", "version": bushu.__version__},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Tensor": tensor,
            "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                        "properties": {"name": {"type": "string"},
                                                                       "parameters": {"type": "object"}}}},
            }},
            "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
            }},
            "ServerMetadata": {"type": "object", "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}},
            "ModelMetadata": {"type": "object", "properties": {
                "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}}}},
        }},
    }
