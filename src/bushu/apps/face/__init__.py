"""Face detection: MediaPipe's BlazeFace (short range), imported from its TFLite file and verified.

The model is the real, pretrained `face_detection_short_range.tflite` that the PyPI wheel
`mediapipe==0.10.21` ships as package data (newer wheels ship no models). Only the file is read,
found through the installed distribution's file list; mediapipe's code is never imported, so
it can be installed without its dependencies. The TFLite file goes through bushu's TFLite
importer (verified against the TFLite interpreter, batch axis made dynamic), and the package
declares what MediaPipe's graph does around the network: letterbox to 128×128, pixels to
[-1, 1] (NHWC), and SSD anchor decoding with weighted non-maximum suppression. Its parameters
are those of MediaPipe's `face_detection_short_range.pbtxt`.
"""

from __future__ import annotations

from pathlib import Path

from bushu.errors import InvalidInput
from bushu.package.manifest import Manifest, Step

DISTRIBUTION = "mediapipe"
MODEL_FILE = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
INPUT_SIZE = (128, 128)
KEYPOINTS = ["right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion"]

PREPROCESSING = [
    Step(kind="decode_image", params={"mode": "RGB"}),
    Step(kind="letterbox", params={"size": list(INPUT_SIZE)}),
    Step(kind="to_float", params={"scale": 1 / 127.5, "offset": -1.0, "layout": "HWC"}),
]
POSTPROCESSING = [
    Step(kind="ssd_detections", params={
        "boxes": "regressors", "scores": "classificators",
        "input_size": list(INPUT_SIZE), "strides": [8, 16, 16, 16], "anchors_per_layer": 2, "anchor_offset": 0.5,
        "keypoints": len(KEYPOINTS), "keypoint_names": KEYPOINTS,
        "score_clip": 100.0, "score_threshold": 0.5, "iou_threshold": 0.3, "max_detections": 20,
    }),
]


def blazeface_file() -> Path:
    """The .tflite inside the installed mediapipe wheel (its code is not imported)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise InvalidInput("the face detector ships in mediapipe 0.10.21's wheel: "
                           "pip install --no-deps mediapipe==0.10.21 (or pip install 'bushu[face]')") from None
    path = Path(str(dist.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise InvalidInput(f"mediapipe {dist.version} ships no {MODEL_FILE}; install mediapipe==0.10.21")
    return path


def package(output: str | Path, *, name: str = "faces", force: bool = False) -> Manifest:
    """Import BlazeFace through the verified TFLite importer and package it as a face detector."""
    from bushu.export.importers import pack_imported

    return pack_imported(blazeface_file(), output, framework="tflite", name=name, task="face-detection",
                         preprocessing=PREPROCESSING, postprocessing=POSTPROCESSING, force=force)
