import pytest
from pydantic import ValidationError

from bushu.package.manifest import Manifest, Provenance, TensorSpec, Variant

DIGEST = "ab" * 32


def manifest(**over) -> Manifest:
    fields = dict(
        name="m",
        framework="onnx",
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4], dims=["batch", None])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 2], dims=["batch", None])],
        variants={"v": Variant(file="model.onnx")},
        default_variant="v",
        provenance=Provenance(bushu_version="0"),
        files={"model.onnx": DIGEST},
    )
    fields.update(over)
    return Manifest(**fields)


def test_valid_manifest_round_trips_through_json_with_the_same_digest():
    m = manifest()
    import orjson

    body = orjson.loads(m.to_json())
    assert body.pop("digest") == m.digest()
    assert Manifest.model_validate(body) == m


def test_digest_changes_with_any_field():
    assert manifest().digest() != manifest(task="other").digest()


@pytest.mark.parametrize(
    "over, message",
    [
        ({"default_variant": "nope"}, "default_variant 'nope'"),
        ({"variants": {"v": Variant(file="other.onnx")}}, "not listed in files"),
        ({"files": {"../escape.onnx": DIGEST, "model.onnx": DIGEST}}, "must be relative"),
        ({"files": {"/abs.onnx": DIGEST, "model.onnx": DIGEST}}, "must be relative"),
        ({"files": {"model.onnx": "xyz"}}, "not a SHA-256"),
        ({"name": "bad name/with slash"}, "name"),
        ({"inputs": []}, "inputs"),
        ({"labels": []}, "labels"),
        (
            {"inputs": [TensorSpec(name="x", datatype="FP32", shape=[1]), TensorSpec(name="x", datatype="FP32", shape=[1])]},
            "repeat",
        ),
    ],
)
def test_inconsistent_manifests_are_rejected_with_the_reason(over, message):
    with pytest.raises(ValidationError, match=message):
        manifest(**over)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"datatype": "FLOAT"}, "datatype"),
        ({"shape": [0, 3]}, "positive size or -1"),
        ({"shape": [-1, 3], "dims": ["batch"]}, "differ in rank"),
        ({"shape": [2, 3], "dims": ["batch", None]}, "only dynamic"),
    ],
)
def test_bad_tensor_specs_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        TensorSpec(**{"name": "x", "datatype": "FP32", "shape": [1], **fields})


def test_unknown_fields_are_rejected_not_ignored():
    with pytest.raises(ValidationError, match="extra"):
        Manifest.model_validate({**manifest().model_dump(), "surprise": 1})
