import struct

import ml_dtypes
import numpy as np
import orjson
import pytest

from bushu.errors import InvalidInput
from bushu.serve.codec import InferRequest, decode_request, encode_response


def body(**doc) -> bytes:
    return orjson.dumps(doc)


def binary_body(header: dict, *blobs: bytes) -> tuple[bytes, str]:
    head = orjson.dumps(header)
    return head + b"".join(blobs), str(len(head))


def test_flat_and_nested_json_data_give_the_same_tensor():
    flat = decode_request(body(inputs=[{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]))
    nested = decode_request(body(inputs=[{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]))
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32 and flat.inputs["x"].shape == (2, 2)


def test_every_datatype_round_trips_through_binary():
    arrays = {
        "b": np.array([True, False, True]),
        "u8": np.array([1, 255, 7], np.uint8),
        "i16": np.array([-3, 4, 5], np.int16),
        "i64": np.array([2**40, -1, 0], np.int64),
        "f16": np.array([0.5, -1.25, 2.0], np.float16),
        "bf16": np.array([1.5, -2.0, 3.0], ml_dtypes.bfloat16),
        "f64": np.array([1e-300, 2.5, -3.0]),
    }
    names = {"b": "BOOL", "u8": "UINT8", "i16": "INT16", "i64": "INT64", "f16": "FP16", "bf16": "BF16", "f64": "FP64"}
    header = {"inputs": [{"name": k, "datatype": names[k], "shape": [3],
                          "parameters": {"binary_data_size": v.nbytes}} for k, v in arrays.items()]}
    raw, length = binary_body(header, *(v.tobytes() for v in arrays.values()))
    decoded = decode_request(raw, length)
    for k, v in arrays.items():
        assert decoded.inputs[k].dtype == v.dtype
        np.testing.assert_array_equal(decoded.inputs[k], v)


def test_bytes_tensors_in_json_and_binary():
    as_json = decode_request(body(inputs=[{"name": "t", "datatype": "BYTES", "shape": [2], "data": ["héllo", ""]}]))
    assert list(as_json.inputs["t"]) == ["héllo".encode(), b""]
    blob = b"".join(struct.pack("<I", len(s)) + s for s in [b"ab", b"", b"xyz"])
    raw, length = binary_body(
        {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(blob)}}]}, blob
    )
    assert list(decode_request(raw, length).inputs["t"]) == [b"ab", b"", b"xyz"]


def test_requested_outputs_and_binary_flags():
    req = decode_request(body(
        id="r1", parameters={"binary_data_output": True},
        inputs=[{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}],
        outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    ))
    assert req.id == "r1" and req.outputs == ["a", "b"] and req.binary_outputs == {"a"}


@pytest.mark.parametrize(
    "raw, header, message",
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (body(inputs=[]), None, "non-empty 'inputs'"),
        (body(inputs=[{"datatype": "FP32", "shape": [1], "data": [1]}]), None, "needs a 'name'"),
        (body(inputs=[{"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}]), None, "unknown datatype"),
        (body(inputs=[{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]), None, "non-negative"),
        (body(inputs=[{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]), None, "do not fill shape"),
        (body(inputs=[{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]), None, "does not hold FP32"),
        (body(inputs=[{"name": "x", "datatype": "BOOL", "shape": [1], "data": [3]}]), None, "true/false"),
        (body(inputs=[{"name": "x", "datatype": "BYTES", "shape": [1], "data": [3]}]), None, "must be strings"),
        (body(inputs=[{"name": "x", "datatype": "FP32", "shape": [1]}]), None, "neither 'data'"),
        (body(inputs=[{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}] * 2), None, "appears twice"),
        (body(inputs=[{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]), None, "does not hold INT8"),
        (body(inputs=[{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], id=5), None, "'id' must be"),
        (b"{}", "abc", "not an integer"),
        (b"{}", "999", "does not fit"),
    ],
)
def test_malformed_requests_are_invalid_input(raw, header, message):
    with pytest.raises(InvalidInput, match=message):
        decode_request(raw, header)


@pytest.mark.parametrize(
    "size, blob, message",
    [
        (8, b"\0" * 4, "runs past"),
        (3, b"\0" * 3, "whole number"),
        (4, b"\0" * 8, "not claimed"),
    ],
)
def test_wrong_binary_lengths_are_invalid_input(size, blob, message):
    raw, length = binary_body(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": size}}]}, blob
    )
    with pytest.raises(InvalidInput, match=message):
        decode_request(raw, length)


def test_truncated_bytes_element_is_invalid_input():
    blob = struct.pack("<I", 10) + b"abc"
    raw, length = binary_body(
        {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(blob)}}]}, blob
    )
    with pytest.raises(InvalidInput, match="runs past the data"):
        decode_request(raw, length)


def test_encode_json_and_binary_responses():
    out = {"y": np.array([[1.5, 2.5]], np.float32), "t": np.array([b"ok"], dtype=object)}
    payload, length = encode_response("m", "1", InferRequest({}, id="q"), out)
    assert length is None
    doc = orjson.loads(payload)
    assert doc["id"] == "q" and doc["model_name"] == "m"
    assert doc["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}
    assert doc["outputs"][1]["data"] == ["ok"]

    payload, length = encode_response("m", "1", InferRequest({}, binary_default=True), out)
    header = orjson.loads(payload[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    blobs = payload[length:]
    assert sizes == [8, 6] and len(blobs) == 14
    np.testing.assert_array_equal(np.frombuffer(blobs[:8], "<f4"), [1.5, 2.5])
    assert blobs[8:] == struct.pack("<I", 2) + b"ok"


@pytest.mark.parametrize("datatype, value", [("FP32", 1e300), ("FP16", 1e6), ("BF16", -1e300)])
def test_a_number_past_its_datatype_is_invalid_input_not_inf(datatype, value):
    """JSON numbers that the tensor's datatype cannot hold are the client's error (400), never a
    silent inf (or, with warnings as errors, a 500)."""
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "data": [1.0, value]}]})
    with pytest.raises(InvalidInput, match=f"'x'.*does not hold {datatype}"):
        decode_request(body)


NUMERIC = ["FP16", "FP32", "FP64", "BF16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]


@pytest.mark.parametrize("datatype", NUMERIC)
@pytest.mark.parametrize("data", [[1, 2, 3, 4], [[0, 127], [5, 6]], [1.5, -2.25, 3, 0.125], [1.0, 2.0, 3.0, 4e0]])
def test_json_numbers_are_read_as_their_datatype(datatype, data):
    """Plain numbers go from the text into one buffer (`json_body`), nested lists flattened; an
    integer datatype takes whole numbers only (NumPy reading a list would truncate 1.5 to 1)."""
    from bushu.runtime.dtypes import numpy_dtype

    raw = body(inputs=[{"name": "x", "datatype": datatype, "shape": [4], "data": data}])
    values = np.asarray(data, dtype=np.float64).reshape(-1)
    if not datatype.startswith(("FP", "BF")) and not np.array_equal(values, np.trunc(values)):
        with pytest.raises(InvalidInput, match=f"does not hold {datatype} values \\(1.5 is not a whole number"):
            decode_request(raw)
        return
    if datatype.startswith("UINT") and values.min() < 0:
        with pytest.raises(InvalidInput, match=f"does not hold {datatype}"):
            decode_request(raw)
        return
    got = decode_request(raw).inputs["x"]
    assert got.dtype == numpy_dtype(datatype)
    np.testing.assert_array_equal(got, values.astype(np.float32 if datatype == "BF16" else got.dtype).astype(got.dtype))


@pytest.mark.parametrize("datatype, values", [("INT8", [-129]), ("INT16", [40000]), ("UINT8", [256]),
                                              ("UINT16", [-1]), ("INT64", [2**63]), ("UINT64", [-1]),
                                              ("INT64", [2.0**63]), ("FP16", [70000.0]), ("INT32", [True]),
                                              ("FP32", [None]), ("FP32", [[1], "2"]), ("UINT8", [{"v": 1}])])
def test_json_values_that_are_not_their_datatype_are_refused(datatype, values):
    """Not a silent NaN for null, 1 for true, or a wrapped integer for 2**63."""
    with pytest.raises(InvalidInput, match=f"'x'.*does not hold {datatype}"):
        decode_request(body(inputs=[{"name": "x", "datatype": datatype, "shape": [len(values)], "data": values}]))


@pytest.mark.parametrize("raw", [b'{"inputs": [{"name": "x", "data": [1e400]}]}', b"\xff\xfe{}",
                                 b'{"inputs": [1] "x"}', b'{"id": 123456789012345678901234567890}', b""])
def test_bodies_no_json_parser_accepts_are_refused_as_json(raw):
    with pytest.raises(InvalidInput, match="not valid JSON"):
        decode_request(raw)


def test_a_request_that_fails_leaves_the_next_one_decodable():
    """simdjson refuses to parse while arrays of its last document live on (a traceback keeps
    them): every request gets a parser of its own."""
    bad = body(inputs=[{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}])
    errors = []
    for _ in range(2):
        try:
            decode_request(bad)
        except InvalidInput as exc:
            errors.append(exc)  # keeps the traceback, and with it the failed request's frames
    good = decode_request(body(inputs=[{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]))
    assert len(errors) == 2 and good.inputs["x"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("data, refused", [(5, None), (2.5, None), (None, "found null"), ("7", 'found "7"'),
                                           ({"v": 1}, "found"), (True, "found true")])
def test_a_lone_json_value_as_data_follows_the_same_rules_as_an_array(data, refused):
    """`data` need not be a list: a lone value goes through the same number rules, not NumPy's."""
    raw = body(inputs=[{"name": "x", "datatype": "FP32", "shape": [1], "data": data}])
    if refused:
        with pytest.raises(InvalidInput, match=refused):
            decode_request(raw)
    else:
        assert decode_request(raw).inputs["x"].tolist() == [data]
