"""SSD anchors, decoding and weighted NMS (runtime/detection.py) and the letterbox mapping, on
numbers worked out by hand."""

import numpy as np
import pytest

from bushu.runtime.detection import decode, iou, ssd_anchors, ssd_detections, weighted_nms
from bushu.runtime.processing import letterbox_to_image

BLAZEFACE = {"input_size": [128, 128], "strides": [8, 16, 16, 16], "keypoints": 6}


def test_blazeface_anchors_are_896_on_two_grids():
    anchors = ssd_anchors([128, 128], [8, 16, 16, 16])
    assert anchors.shape == (896, 2)  # 16×16 cells × 2 + 8×8 cells × 6
    assert anchors[0].tolist() == anchors[1].tolist() == [0.5 / 16, 0.5 / 16]
    assert anchors[512].tolist() == pytest.approx([0.5 / 8, 0.5 / 8])
    assert anchors[512 + 6].tolist() == pytest.approx([1.5 / 8, 0.5 / 8])  # next cell along x


def test_decoding_offsets_each_box_from_its_anchor():
    anchors = np.array([[0.5, 0.5]], np.float32)
    raw = np.array([[12.8, -12.8, 64, 32, 0, 0]], np.float32)  # +0.1 x, -0.1 y, w 0.5, h 0.25; 1 keypoint
    boxes, scores, points = decode(raw, np.array([0.0]), anchors, (128, 128), keypoints=1)
    assert boxes[0].tolist() == pytest.approx([0.35, 0.275, 0.85, 0.525])
    assert scores.tolist() == [0.5] and points[0, 0].tolist() == [0.5, 0.5]


def test_weighted_nms_merges_overlaps_and_keeps_apart_what_is_apart():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.6, 0.8])
    points = np.zeros((3, 0, 2))
    merged = weighted_nms(boxes, scores, points, iou_threshold=0.3, max_detections=10)
    assert [round(s, 2) for _, s, _ in merged] == [0.9, 0.8]
    assert merged[0][0].tolist() == pytest.approx([0.4, 0, 10.4, 10])  # score-weighted mean
    assert merged[1][0].tolist() == [50, 50, 60, 60]
    assert iou(np.array([0, 0, 10, 10.0]), np.array([[5, 0, 15, 10.0]]))[0] == pytest.approx(1 / 3)


def test_low_scores_give_no_detections_and_a_wrong_anchor_count_is_refused():
    regressors = np.zeros((2, 896, 16), np.float32)
    logits = np.full((2, 896, 1), -5, np.float32)
    logits[1, 100] = 3
    found = ssd_detections(regressors, logits, BLAZEFACE)
    assert found[0] == [] and len(found[1]) == 1 and len(found[1][0]["keypoints"]) == 6
    with pytest.raises(ValueError, match="gives 10 anchors"):
        ssd_detections(regressors[:, :10], logits[:, :10], BLAZEFACE)


def test_letterbox_coordinates_map_back_to_the_original_image():
    # a 400×200 image in a 128×128 letterbox: scale 0.32, 64 rows of picture, 32 rows of padding above
    corners = np.array([[0, 32 / 128], [1, 96 / 128]])
    np.testing.assert_allclose(letterbox_to_image(corners, (400, 200), (128, 128)), [[0, 0], [400, 200]], atol=1e-9)
