"""The face detection app: BlazeFace from mediapipe's wheel, imported through the TFLite importer,
finds the faces in real photographs (checked against hand-labelled boxes) and none elsewhere."""

from __future__ import annotations

import io
import warnings

import httpx
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the tf extra is not installed")
pytest.importorskip("skimage", reason="the face extra is not installed")

import tritonclient.http as triton  # noqa: E402
from PIL import Image  # noqa: E402

from bushu.package.store import verify_package  # noqa: E402
from bushu.runtime.detection import iou  # noqa: E402
from fixtures.media import photo, png  # noqa: E402
from fixtures.servers import ThreadServer  # noqa: E402

#: Faces labelled by hand, looking at the pictures (x0, y0, x1, y1 in pixels): hairline or brow
#: to chin, ear (or cheek) to cheek.
HAND_LABELLED = {
    "astronaut": [175, 72, 268, 182],  # Eileen Collins, facing the camera
    "camera": [172, 95, 258, 200],  # the cameraman, in profile behind his camera
}
FACE_FREE = ["coffee", "rocket"]


@pytest.fixture(scope="module")
def server(face_package):
    with ThreadServer([face_package]) as running:
        yield running


def _predict(server, image: np.ndarray, query: str = "") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/faces/predict{query}", content=png(image),
                      headers={"content-type": "image/png"}, timeout=30)


def test_package_is_the_verified_tflite_import(face_package):
    manifest = verify_package(face_package)
    assert manifest.framework == "tflite" and manifest.task == "face-detection"
    assert manifest.provenance.source.endswith("face_detection_short_range.tflite")
    errors = manifest.variants[manifest.default_variant].max_rel_error
    assert set(errors) == {"regressors", "classificators"} and max(errors.values()) <= 1e-4
    assert manifest.inputs[0].shape == [-1, 128, 128, 3]  # NHWC as in TFLite, batch made dynamic
    assert [s.kind for s in manifest.postprocessing] == ["ssd_detections"]


@pytest.mark.parametrize("name", sorted(HAND_LABELLED))
def test_finds_the_face_in_a_photograph(server, name):
    answer = _predict(server, photo(name)).json()
    assert len(answer["detections"]) == 1, answer
    found = answer["detections"][0]
    overlap = float(iou(np.array(HAND_LABELLED[name], float), np.array([found["box"]], float))[0])
    assert overlap >= 0.5, (name, found["box"], overlap)
    assert 0.5 <= found["score"] <= 1
    names = [p["name"] for p in found["landmarks"]]
    assert names[:2] == ["right_eye", "left_eye"] and len(names) == 6
    x0, y0, x1, y1 = found["box"]
    eye = found["landmarks"][0]
    assert x0 <= eye["x"] <= x1 and y0 <= eye["y"] <= y1  # landmarks land inside the face


@pytest.mark.parametrize("name", FACE_FREE)
def test_a_face_free_photograph_gives_no_boxes(server, name):
    assert _predict(server, photo(name)).json() == {"detections": []}


def test_render_png_draws_the_box_on_the_image(server):
    image = photo("astronaut")
    response = _predict(server, image, "?render=png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    assert drawn.shape == image.shape
    box = [round(v) for v in _predict(server, image).json()["detections"][0]["box"]]
    edge = drawn[box[1] + 1, box[0] + 5 : box[2] - 5]  # the top edge of the box is green now
    assert (edge[:, 1] > 200).mean() > 0.9 and (edge[:, 0] < 60).mean() > 0.9
    changed = np.abs(drawn - image).sum(axis=-1) > 0
    assert changed[: box[1] - 10].sum() == 0  # nothing drawn above the face


def test_bad_images_answer_400(server):
    response = httpx.post(f"{server.url}/v1/models/faces/predict", content=b"\x89PNG broken",
                          headers={"content-type": "image/png"})
    assert response.status_code == 400 and "could not decode the image" in response.json()["error"]


def test_tritonclient_batches_frames_and_equals_the_tflite_interpreter(server, face_package):
    import tensorflow as tf

    from bushu.apps.face import blazeface_file

    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32)
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer("faces", [tensor])
    finally:
        client.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(blazeface_file()))
    interpreter.allocate_tensors()
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    for row in range(len(x)):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[row : row + 1])
        interpreter.invoke()
        for name in ("regressors", "classificators"):
            want = interpreter.get_tensor(outputs[name])[0]
            got = result.as_numpy(name)[row]
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
