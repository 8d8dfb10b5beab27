"""Video on the predict route: decoded with PyAV, sampled at fps=, batched, one JSON line per frame."""

from __future__ import annotations

import io

import httpx
import numpy as np
import orjson
import pytest

av = pytest.importorskip("av", reason="the video extra is not installed")
pytest.importorskip("skimage", reason="the face extra is not installed")

from bushu.runtime.detection import iou  # noqa: E402
from bushu.serve.settings import ServeSettings  # noqa: E402
from fixtures.media import make_video, photo, png  # noqa: E402
from fixtures.servers import ThreadServer  # noqa: E402

SCENES = ["astronaut", "coffee", "camera"]  # a second each


@pytest.fixture(scope="module")
def server(face_package, vision_package):
    with ThreadServer([face_package, vision_package], ServeSettings(max_video_seconds=10)) as running:
        yield running


def _stream(server, model: str, video: bytes, query: str = "", content_type: str = "video/mp4") -> list[dict]:
    with httpx.stream("POST", f"{server.url}/v1/models/{model}/predict{query}", content=video,
                      headers={"content-type": content_type}, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/x-ndjson"
        return [orjson.loads(line) for line in response.iter_lines() if line]


@pytest.mark.parametrize(("container", "codec", "content_type"),
                         [("mp4", "libx264", "video/mp4"), ("webm", "libvpx", "video/webm")])
def test_per_frame_detections_match_the_still_image_answers(server, container, codec, content_type):
    stills = {}
    for name in SCENES:
        answer = httpx.post(f"{server.url}/v1/models/faces/predict", content=png(photo(name)),
                            headers={"content-type": "image/png"}).json()
        stills[name] = [d["box"] for d in answer["detections"]]
    video = make_video([photo(n) for n in SCENES], 1.0, fps=10, container=container, codec=codec)
    frames = _stream(server, "faces", video, "?fps=5", content_type)
    assert [f["frame"] for f in frames] == list(range(15))  # 3 s sampled at 5 fps
    assert [f["time"] for f in frames] == pytest.approx([i / 5 for i in range(15)], abs=0.01)
    for f in frames:
        scene = SCENES[int(f["time"])]
        boxes = [d["box"] for d in f["detections"]]
        assert len(boxes) == len(stills[scene]), (f, scene)
        for got, want in zip(boxes, stills[scene]):  # astronaut and camera are 512×512, as the video
            assert float(iou(np.array(want), np.array([got]))[0]) >= 0.8, (f["time"], got, want)


def _decoded_frames(video: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(video)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_the_digits_cnn_labels_each_frame_as_it_labels_the_same_still(server):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [np.repeat(np.kron(img / 16 * 255, np.ones((8, 8))).astype(np.uint8)[..., None], 3, axis=-1)
              for img in digits.images[:6]]
    video = make_video(images, 0.2, fps=10, size=(64, 64))
    frames = _stream(server, "digits-cnn", video)  # no fps=: every frame
    decoded = _decoded_frames(video)
    assert len(frames) == len(decoded) == 12
    for answer, pixels in zip(frames, decoded):
        still = httpx.post(f"{server.url}/v1/models/digits-cnn/predict", content=png(pixels),
                           headers={"content-type": "image/png"}).json()
        assert answer["label"] == still["label"]
        assert answer["probabilities"] == pytest.approx(still["probabilities"], abs=1e-5)
    labels = [a["label"] for a in frames]
    assert sum(lb == str(t) for lb, t in zip(labels[::2], digits.target[:6])) >= 5  # and they are right


def test_an_undecodable_file_answers_400(server):
    response = httpx.post(f"{server.url}/v1/models/faces/predict", content=b"\x00\x00\x00\x18ftypmp42 not really",
                          headers={"content-type": "video/mp4"})
    assert response.status_code == 400
    assert "could not decode the video" in response.json()["error"]


def test_a_bad_fps_answers_400(server):
    video = make_video([photo("coffee")], 0.2, fps=5, size=(64, 64))
    response = httpx.post(f"{server.url}/v1/models/faces/predict?fps=0", content=video,
                          headers={"content-type": "video/mp4"})
    assert response.status_code == 400 and "fps=0" in response.json()["error"]


def test_limits_on_duration_and_size_answer_413(server, face_package):
    long_video = make_video([photo("coffee")], 12.0, fps=2, size=(64, 64))
    response = httpx.post(f"{server.url}/v1/models/faces/predict", content=long_video,
                          headers={"content-type": "video/mp4"})
    assert response.status_code == 413 and "limit is 10 s" in response.json()["error"]
    with ThreadServer([face_package], ServeSettings(max_body_bytes=len(long_video) - 1)) as small:
        response = httpx.post(f"{small.url}/v1/models/faces/predict", content=long_video,
                              headers={"content-type": "video/mp4"})
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
