"""The gRPC tensor codec against tritonclient's own serialisers: every V2 datatype in and out."""

import ml_dtypes
import numpy as np
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from bushu.errors import InvalidInput
from bushu.serve.grpc_codec import decode_infer, encode_infer

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


def raw_of(datatype, array):
    if datatype == "BYTES":
        return serialize_byte_tensor(array).item()  # as tritonclient's gRPC client takes it
    if datatype == "BF16":  # 2 bytes a value, little-endian (tritonclient's gRPC client sends BF16 this way)
        return array.astype(ml_dtypes.bfloat16).tobytes()
    return array.astype(np.dtype(triton_to_np_dtype(datatype)).newbyteorder("<")).tobytes()


def sample(datatype, rng):
    if datatype == "BYTES":
        return np.array([b"caf\xc3\xa9", b"", b"\x00\xff"] * 2, dtype=object).reshape(2, 3)
    if datatype == "BF16":
        return rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16)
    if datatype == "BOOL":
        return rng.integers(0, 2, (2, 3)).astype(bool)
    return (rng.standard_normal((2, 3)) * 50).astype(triton_to_np_dtype(datatype))


@pytest.mark.parametrize("datatype", [*NUMERIC, "BF16", "BYTES"])
def test_raw_contents_both_ways(datatype, rng):
    array = sample(datatype, rng)
    request = service_pb2.ModelInferRequest(model_name="m", id="r")
    request.inputs.add(name="t", datatype=datatype, shape=array.shape)
    request.raw_input_contents.append(raw_of(datatype, array))
    decoded = decode_infer(request)
    assert decoded.id == "r" and decoded.outputs is None and decoded.inputs["t"].shape == (2, 3)
    if datatype == "BYTES":
        assert decoded.inputs["t"].tolist() == array.tolist()
    else:
        np.testing.assert_array_equal(decoded.inputs["t"], array)
    response = encode_infer(service_pb2, "m", "1", "r", {"out": decoded.inputs["t"]})
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("out", datatype, [2, 3])
    assert response.raw_output_contents[0] == raw_of(datatype, array)
    if datatype == "BYTES":
        assert deserialize_bytes_tensor(response.raw_output_contents[0]).tolist() == array.reshape(-1).tolist()


@pytest.mark.parametrize(("datatype", "field", "values"), [
    ("FP32", "fp32_contents", [0.5, -1.25]), ("INT64", "int64_contents", [2**40, -3]),
    ("INT16", "int_contents", [-300, 300]), ("UINT8", "uint_contents", [0, 255]), ("BOOL", "bool_contents", [True, False]),
    ("BYTES", "bytes_contents", [b"a", b"bc"]), ("FP64", "fp64_contents", [1e300, -2.0]),
])
def test_typed_contents(datatype, field, values):
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="t", datatype=datatype, shape=[2])
    getattr(tensor.contents, field).extend(values)
    assert decode_infer(request).inputs["t"].tolist() == values


@pytest.mark.parametrize(("build", "message"), [
    (lambda r: None, "at least one input"),
    (lambda r: r.inputs.add(name="t", datatype="FP32", shape=[2]).contents.fp32_contents.append(1.0), r"1 value\(s\) do not fill"),
    (lambda r: r.inputs.add(name="t", datatype="FP9", shape=[1]), "unknown datatype 'FP9'"),
    (lambda r: r.inputs.add(name="t", datatype="FP32", shape=[-1]), "non-negative"),
    (lambda r: r.inputs.add(name="t", datatype="FP16", shape=[1]).contents.fp32_contents.append(1.0), "raw_input_contents only"),
    (lambda r: r.inputs.add(name="t", datatype="UINT8", shape=[1]).contents.uint_contents.append(256), "does not fit UINT8"),
    (lambda r: r.inputs.add(name="t", datatype="FP32", shape=[1]).contents.fp64_contents.append(1.0), r"0 value\(s\)"),
    (lambda r: (r.inputs.add(name="t", datatype="FP32", shape=[1]), r.raw_input_contents.extend([b"\0" * 4] * 2)), "2 raw_input_contents for 1 inputs"),
    (lambda r: (r.inputs.add(name="t", datatype="BYTES", shape=[1]), r.raw_input_contents.append(b"\x09\0\0\0ab")), "runs past the data"),
    (lambda r: [r.inputs.add(name="t", datatype="FP32", shape=[0]) for _ in range(2)], "appears twice"),
])
def test_bad_requests_name_what_is_wrong(build, message):
    request = service_pb2.ModelInferRequest(model_name="m")
    build(request)
    with pytest.raises(InvalidInput, match=message):
        decode_infer(request)
