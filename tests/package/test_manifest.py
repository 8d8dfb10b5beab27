import pytest
from pydantic import ValidationError

from bushu.package.manifest import Manifest, Provenance, Step, TensorSpec, Variant

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


VOCAB = {"model.onnx": DIGEST, "text/vocab.json": DIGEST}


@pytest.mark.parametrize("where, step, path", [
    ("preprocessing", Step(kind="tokenize", params={"vocab": "/etc/passwd"}), "/etc/passwd"),
    ("preprocessing", Step(kind="tokenize", params={"vocab": "../other/vocab.json"}), "../other/vocab.json"),
    ("preprocessing", Step(kind="tokenize", params={"vocab": "text/unlisted.json"}), "text/unlisted.json"),
    ("preprocessing", Step(kind="hf_tokenize", params={"file": "/root/tokenizer.json"}), "/root/tokenizer.json"),
    ("postprocessing", Step(kind="top_k_unseen", params={"seen": "/tmp/seen.npz", "n_users": 2}), "/tmp/seen.npz"),
    ("postprocessing", Step(kind="some_future_step", params={"labels_file": "./text/vocab.json"}),
     "./text/vocab.json"),
    ("preprocessing", Step(kind="tokenize", params={"vocab": ["text/vocab.json"]}), "['text/vocab.json']"),
])
def test_a_step_may_only_name_listed_package_files(where, step, path):
    """Each refusal names the step, the param and the path, so the package's author can fix it."""
    with pytest.raises(ValidationError) as refused:
        manifest(files=VOCAB, **{where: [step]})
    assert f"{where} step 0 ({step.kind})" in str(refused.value)
    assert repr(path) in str(refused.value) or path in str(refused.value)


def test_steps_naming_listed_files_and_plain_params_are_accepted():
    ok = manifest(files=VOCAB, preprocessing=[Step(kind="tokenize", params={
        "vocab": "text/vocab.json", "pattern": r"https?://\S+|\w+", "max_length": 8})])
    assert ok.preprocessing[0].file_params() == {"vocab": "text/vocab.json"}


@pytest.mark.parametrize("source, message", [
    ("subprocess:Popen", "part of Python itself"),
    ("os:system", "part of Python itself"),
    ("builtins:exec", "part of Python itself"),
    ("os.path:join", "part of Python itself"),
    ("model.py:Net", "a file path"),
    ("./nets/model.py:Net", "a file path"),
    ("/abs/model.py:Net", "a file path"),
    ("mymodels:Net(1)", "importable module and class"),
    ("", "importable module and class"),
])
def test_a_pytorch_variant_needs_an_importable_module_class_as_its_source(source, message):
    torch_variant = {"v": Variant(file="model.onnx"), "t": Variant(file="w.safetensors", backend="pytorch")}
    with pytest.raises(ValidationError, match=message):
        manifest(variants=torch_variant, files={"model.onnx": DIGEST, "w.safetensors": DIGEST},
                 provenance=Provenance(bushu_version="0", source=source))


def test_a_file_path_source_is_fine_where_nothing_builds_it():
    """`bushu pack model.py:Net` records where the model came from; only PyTorch variants build it."""
    assert manifest(provenance=Provenance(bushu_version="0", source="model.py:Net")).provenance.source == "model.py:Net"


def test_openvino_ir_needs_its_weights_listed():
    with pytest.raises(ValidationError, match="whose weights 'ov/model.bin'"):
        manifest(variants={"v": Variant(file="model.onnx"), "ov": Variant(file="ov/model.xml", backend="openvino")},
                 files={"model.onnx": DIGEST, "ov/model.xml": DIGEST})
