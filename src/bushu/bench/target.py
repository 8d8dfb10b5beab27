"""What a benchmark sends: one pre-encoded request, built from a V2 server's model metadata.

The metadata calls are plain blocking HTTP (urllib): they happen once, before the load starts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from math import prod
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from bushu.errors import BushuError, InvalidInput, NotFound


@dataclass(frozen=True)
class Target:
    """One request, encoded once and sent again and again."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: What the request is, in words (for reports).
    label: str = ""


class Unreachable(BushuError):
    status = 503


def check_url(url: str) -> str:
    """The URL without a trailing slash, or an InvalidInput naming what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{url!r} is not an http(s) URL (expected e.g. http://127.0.0.1:8000)")
    try:
        parts.port  # noqa: B018 — raises on a malformed port
    except ValueError as exc:
        raise InvalidInput(f"{url!r}: {exc}") from None
    return url.rstrip("/")


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of one blocking request; a server that cannot be reached is `Unreachable`."""
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot reach {url}: {reason}") from None


def _json_or_error(status: int, body: bytes, what: str) -> Any:
    try:
        doc = json.loads(body)
    except ValueError:
        raise BushuError(f"{what}: the server answered {status} with a body that is not JSON") from None
    return doc


def pick_model(base: str, model: str | None) -> str:
    """`model` if given, else the only model the server lists in its repository index."""
    if model:
        return model
    status, body = http("POST", f"{base}/v2/repository/index", b"{}")
    if status != 200:
        raise BushuError(f"{base} did not list its models (POST /v2/repository/index answered {status}); "
                         "name one with --model")
    names = sorted({entry.get("name") for entry in _json_or_error(status, body, "repository index")
                    if isinstance(entry, dict) and entry.get("name")})
    if len(names) != 1:
        listed = ", ".join(names) if names else "none"
        raise InvalidInput(f"{base} serves {len(names)} models ({listed}); choose one with --model")
    return names[0]


def model_metadata(base: str, model: str) -> dict[str, Any]:
    status, body = http("GET", f"{base}/v2/models/{quote(model, safe='')}")
    if status == 404:
        raise NotFound(f"{base} does not serve a model named {model!r}")
    if status != 200:
        raise BushuError(f"GET /v2/models/{model} answered {status}: {body[:200].decode(errors='replace')}")
    return _json_or_error(status, body, f"metadata of {model!r}")


def _sample(datatype: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BYTES":
        out = np.empty(prod(shape), dtype=object)
        out[:] = [b"bushu bench"] * out.size
        return out.reshape(shape)
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if datatype.startswith(("INT", "UINT")):
        # small, non-negative: safe for embedding tables and ids
        return rng.integers(0, 8, size=shape).astype(datatype.lower())
    from bushu.runtime.dtypes import numpy_dtype

    return rng.standard_normal(shape).astype(numpy_dtype(datatype))


def sample_inputs(metadata: dict[str, Any], seed: int = 0) -> dict[str, tuple[str, np.ndarray]]:
    """Random inputs fitting the metadata: batch axis (first -1) 1, any other -1 axis 16."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in metadata.get("inputs") or []:
        shape = [int(d) for d in spec["shape"]]
        shape = [d if d >= 0 else (1 if i == 0 else 16) for i, d in enumerate(shape)]
        inputs[spec["name"]] = (spec["datatype"], _sample(spec["datatype"], shape, rng))
    if not inputs:
        raise BushuError("the model's metadata lists no inputs")
    return inputs


def _binary_blob(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        import struct

        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def v2_body(inputs: dict[str, tuple[str, np.ndarray]], binary: bool = False) -> tuple[bytes, dict[str, str]]:
    """A V2 infer request: JSON tensors (flat `data`, as tritonclient sends), or the binary extension."""
    import orjson

    entries, blobs = [], []
    for name, (datatype, array) in inputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _binary_blob(datatype, array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [v.decode() for v in array.reshape(-1)]
        else:
            entry["data"] = array.reshape(-1)
        entries.append(entry)
    doc: dict[str, Any] = {"inputs": entries}
    if binary:
        doc["parameters"] = {"binary_data_output": True}
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(header))}


def v2_target(url: str, model: str | None = None, *, binary: bool = False, seed: int = 0) -> Target:
    """The infer request for `model` (or the server's only model) on the V2 server at `url`."""
    base = check_url(url)
    status, _ = http("GET", f"{base}/v2/health/ready")
    if status != 200:
        raise BushuError(f"{base} is not ready (GET /v2/health/ready answered {status})")
    name = pick_model(base, model)
    metadata = model_metadata(base, name)
    body, headers = v2_body(sample_inputs(metadata, seed), binary)
    shapes = ", ".join(f"{s['name']} {s['datatype']} {s['shape']}" for s in metadata["inputs"])
    kind = "binary" if binary else "JSON"
    return Target(f"{base}/v2/models/{quote(name, safe='')}/infer", body, headers,
                  f"{name} ({shapes}; {kind}, {len(body):,} B/request)")
