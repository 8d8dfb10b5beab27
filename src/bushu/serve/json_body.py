"""A V2 request's JSON, with each input's numbers kept out of Python objects.

A JSON infer request is mostly numbers (3,072 for one 32×32 RGB image). orjson makes a Python
float of each and NumPy then copies them into an array: 88 µs of the ~400 µs of CPU a request
to the digits model cost, the largest single share of the server's time. simdjson (pysimdjson)
parses the same bytes and hands an input's `data` over as one buffer of doubles or 64-bit
integers (flattening nested lists, as V2 allows): 29 µs. Everything else in the document becomes
the plain Python objects orjson would have made, and so does the data of BOOL and BYTES inputs.
`numbers` is the one place a numeric input's JSON values become a tensor: from the buffer, or
(a lone value, or an array with something that is no number in it) from Python values, by the
same rules.

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
    return {key: [_input(i) for i in value] if key == "inputs" and isinstance(value, simdjson.Array) else _plain(value)
            for key, value in _fields(doc).items()}


def _input(value: Any) -> Any:
    if not isinstance(value, simdjson.Object):
        return _plain(value)
    return {key: item if key == "data" and isinstance(item, simdjson.Array) else _plain(item)
            for key, item in _fields(value).items()}


def _fields(obj: simdjson.Object) -> dict[str, Any]:
    """An object's values as simdjson leaves them (items() would turn every one into Python objects)."""
    return {key: obj[key] for key in obj.keys()}


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def numbers(data: Any, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    """A numeric input's `data` (a `Data` array, or a lone JSON value) as a flat `dtype` array,
    refused unless every value is a number, for an integer datatype a whole one, and each fits
    `dtype` (NumPy reading a list would make `null` a NaN, truncate 1.5 to 1, wrap 2**63)."""
    kind, wide = NUMERIC[datatype]
    values = _buffer(data, kind, wide) if isinstance(data, Data) else None
    if values is None:
        flat = flatten(data)
        strays = [v for v in flat if isinstance(v, bool) or not isinstance(v, (int, float))]
        if strays:
            raise InvalidInput(f"input {name!r}: 'data' does not hold {datatype} values (only numbers do; found "
                               f"{json.dumps(strays[0])})")
        try:
            values = np.array(flat, dtype=np.float64 if any(isinstance(v, float) for v in flat) else wide)
        except OverflowError as exc:  # an integer past the 64 bits of the datatype's kind
            raise InvalidInput(f"input {name!r}: 'data' does not hold {datatype} values ({exc})") from None
    if kind != "d" and values.dtype.kind == "f" and not np.array_equal(values, np.trunc(values)):
        fraction = values[values != np.trunc(values)][0]
        raise InvalidInput(f"input {name!r}: 'data' does not hold {datatype} values ({fraction:g} is not a whole number)")
    return _narrowed(values, datatype, dtype, name)


def _buffer(data: Data, kind: str, wide: type) -> np.ndarray | None:
    """The numbers straight from the text: as the datatype's kind, else as doubles (a float for an
    integer type, a negative for an unsigned one), else None (something that is no number)."""
    for of_type, into in ((kind, wide), ("d", np.float64)):
        try:
            return np.frombuffer(data.as_buffer(of_type=of_type), dtype=into)
        except (TypeError, ValueError):
            continue
    return None


def _narrowed(values: np.ndarray, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    """float64/int64/uint64 values as `dtype`, refused where one does not fit."""
    try:
        if datatype.startswith(("FP", "BF")):
            with np.errstate(over="raise", invalid="raise"):  # 1e300 as FP32 would silently become inf
                array = values.astype(np.float32 if datatype == "BF16" else dtype)
            return array.astype(dtype) if datatype == "BF16" else array
        info = np.iinfo(dtype)
        # A double's nearest value to the largest int64 is 2**63, one past it: compare with that + 1.
        if values.size and (values.min() < info.min or (values.max() >= float(info.max) + 1 if values.dtype.kind == "f"
                                                          else values.max() > info.max)):
            raise OverflowError(f"values from {values.min():g} to {values.max():g} do not fit {datatype}")
        return values.astype(dtype)
    except (OverflowError, FloatingPointError) as exc:
        raise InvalidInput(f"input {name!r}: 'data' does not hold {datatype} values ({exc})") from None


def flatten(data: Any) -> list:
    """An input's `data` (a `Data` array, nested lists, or a lone value) as one flat list of Python
    values, in row-major order."""
    if isinstance(data, Data):
        data = data.as_list()
    return _flat(data) if isinstance(data, list) else [data]


def _flat(values: list) -> list:
    return [v for item in values for v in (_flat(item) if isinstance(item, list) else [item])]
