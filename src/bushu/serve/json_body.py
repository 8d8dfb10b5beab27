"""A V2 request's JSON, with each input's numbers kept out of Python objects.

A JSON infer request is mostly numbers (3,072 for one 32×32 RGB image). orjson makes a Python
float of each and NumPy then copies them into an array: 88 µs of the ~400 µs of CPU a request
to the digits model cost, the largest single share of the server's time. simdjson (pysimdjson)
parses the same bytes and hands an input's `data` over as one buffer of doubles or 64-bit
integers (flattening nested lists, as V2 allows): 29 µs. Everything else in the document becomes
the plain Python objects orjson would have made, and so does the data of BOOL and BYTES inputs.

A parser is made per request: a simdjson parser refuses to parse again while any array of its
last document is still referenced (an exception's traceback can hold one), and a new one costs
well under a microsecond.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import simdjson

from bushu.errors import InvalidInput

#: The buffer each numeric datatype is read through (pysimdjson's `of_type`) and its NumPy dtype.
NUMERIC = {"FP16": ("d", np.float64), "FP32": ("d", np.float64), "FP64": ("d", np.float64),
            "BF16": ("d", np.float64), **{f"INT{b}": ("i", np.int64) for b in (8, 16, 32, 64)},
            **{f"UINT{b}": ("u", np.uint64) for b in (8, 16, 32, 64)}}

Data = simdjson.Array


def loads(body: bytes) -> Any:
    """The document as Python objects, except `inputs[i]["data"]`, left a `Data` array."""
    try:
        doc = simdjson.Parser().parse(body)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: an integer beyond 64 bits
        raise InvalidInput(f"the request body is not valid JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, simdjson.Object):
        return _plain(doc)
    # (items() would turn every value into Python objects: look each up by key instead)
    return {key: [_input(i) for i in doc[key]] if key == "inputs" and isinstance(doc[key], simdjson.Array)
            else _plain(doc[key]) for key in doc.keys()}


def _input(value: Any) -> Any:
    if not isinstance(value, simdjson.Object):
        return _plain(value)
    return {key: value[key] if key == "data" and isinstance(value[key], simdjson.Array) else _plain(value[key])
            for key in value.keys()}


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def numbers(data: Data, datatype: str, name: str) -> np.ndarray:
    """`data`'s values as a flat float64, int64 or uint64 array for a numeric `datatype`, refused
    unless every value is a number, and for an integer datatype a whole one (NumPy reading a list
    would make `null` a NaN and truncate 1.5 to 1 without a word). Ranges are the caller's."""
    kind, dtype = NUMERIC[datatype]
    try:
        return np.frombuffer(data.as_buffer(of_type=kind), dtype=dtype)
    except (TypeError, ValueError):  # a float for an integer type, a negative for an unsigned one, or no number
        pass
    try:
        values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):
        found = next((v for v in _flat(data.as_list()) if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        raise InvalidInput(f"input {name!r}: 'data' does not hold {datatype} values (only numbers do; found "
                           f"{json.dumps(found)})") from None
    if kind != "d" and not np.array_equal(values, np.trunc(values)):
        fraction = values[values != np.trunc(values)][0]
        raise InvalidInput(f"input {name!r}: 'data' does not hold {datatype} values ({fraction:g} is not a whole number)")
    return values


def _flat(values: list) -> list:
    return [v for item in values for v in (_flat(item) if isinstance(item, list) else [item])]
