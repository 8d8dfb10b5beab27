import numpy as np
import pytest

from bushu.errors import InvalidInput
from bushu.export.specs import parse_input_spec, random_inputs


@pytest.mark.parametrize(
    "text, shape, dims",
    [
        ("image:FP32:-1,3,32,32", [-1, 3, 32, 32], ["batch", None, None, None]),
        ("image:fp32:-1x3x32x32", [-1, 3, 32, 32], ["batch", None, None, None]),
        ("ids:INT64:batch,sequence", [-1, -1], ["batch", "sequence"]),
        ("ids:INT64:[-1,-1]", [-1, -1], ["batch", "dim1"]),
    ],
)
def test_parse_input_spec(text, shape, dims):
    spec = parse_input_spec(text)
    assert spec.shape == shape and spec.dims == dims


@pytest.mark.parametrize(
    "text, message",
    [
        ("image", "NAME:DTYPE:SHAPE"),
        ("image:FLOAT:1,2", "unknown datatype"),
        ("image:FP32:", "no axes"),
        ("image:FP32:0,3", "neither a positive size"),
        ("9bad:FP32:1", "not a valid tensor name"),
    ],
)
def test_bad_input_specs_say_why(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_input_spec(text)


def test_random_inputs_fit_the_spec_and_ranges(rng):
    specs = [parse_input_spec("ids:INT64:batch,seq"), parse_input_spec("mask:BOOL:batch,seq"),
             parse_input_spec("x:FP16:batch,4")]
    arrays = random_inputs(specs, {"batch": 3, "seq": 7}, rng, {"ids": (5, 9)})
    assert arrays["ids"].shape == (3, 7) and arrays["ids"].dtype == np.int64
    assert arrays["ids"].min() >= 5 and arrays["ids"].max() < 9
    assert arrays["mask"].dtype == np.bool_
    assert arrays["x"].shape == (3, 4) and arrays["x"].dtype == np.float16
