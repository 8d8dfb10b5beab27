"""SSD-style detections from raw anchor regressions: anchors, decoding, non-maximum suppression.

Single-shot detectors such as BlazeFace output one regression row and one score per anchor; the
boxes only exist after the anchors are laid out the way the model was trained, each row is
decoded against its anchor, and overlapping boxes are merged. That is part of the model's
meaning, so it travels in the manifest as a post-processing step (`ssd_detections`) with the
parameters below, and this module is its one implementation (MediaPipe's
`SsdAnchorsCalculator`, `TensorsToDetectionsCalculator` and weighted NMS, in numpy).

Boxes come out normalised to the model's input square: [x_min, y_min, x_max, y_max] in 0..1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def ssd_anchors(input_size: Sequence[int], strides: Sequence[int], anchors_per_layer: int = 2,
                offset: float = 0.5) -> np.ndarray:
    """Anchor centres [n, 2] (x, y in 0..1), fixed size 1: layers of one stride share a grid.

    Each layer adds `anchors_per_layer` anchors per grid cell (an aspect ratio and its
    interpolated scale); consecutive layers with the same stride stack on one grid.
    """
    height, width = input_size
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        run = 0  # the layers that share this stride share its grid
        while layer + run < len(strides) and strides[layer + run] == stride:
            run += 1
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid((np.arange(rows) + offset) / rows, (np.arange(cols) + offset) / cols, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, anchors_per_layer * run, axis=0))
        layer += run
    return np.concatenate(centres).astype(np.float32)


def decode(raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, scale: Sequence[float],
           keypoints: int, score_clip: float = 100.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's rows → (boxes [n, 4] x0 y0 x1 y1, scores [n], keypoints [n, k, 2]), all anchors."""
    sx, sy = scale
    xc = raw[:, 0] / sx + anchors[:, 0]
    yc = raw[:, 1] / sy + anchors[:, 1]
    w = raw[:, 2] / sx
    h = raw[:, 3] / sy
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    points = raw[:, 4 : 4 + 2 * keypoints].reshape(-1, keypoints, 2) / np.asarray([sx, sy], np.float32)
    points = points + anchors[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -score_clip, score_clip)))
    return boxes, scores.astype(np.float32), points


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box [4] with each of `boxes` [n, 4] (x0 y0 x1 y1)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float,
                 max_detections: int) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Merge overlapping candidates into their score-weighted mean (MediaPipe's WEIGHTED NMS).

    BlazeFace fires several neighbouring anchors per face; averaging them is steadier from frame
    to frame than keeping the single best, which matters for video.
    """
    order = np.argsort(-scores, kind="stable")
    out: list[tuple[np.ndarray, float, np.ndarray]] = []
    while order.size and len(out) < max_detections:
        overlaps = iou(boxes[order[0]], boxes[order])
        overlaps[0] = 1.0  # a box always covers itself, even a degenerate one of no area
        group = order[overlaps > iou_threshold]
        weights = scores[group][:, None]
        total = float(weights.sum())
        box = (boxes[group] * weights).sum(axis=0) / total
        kps = (points[group] * weights[:, :, None]).sum(axis=0) / total
        out.append((box, float(scores[order[0]]), kps))
        order = order[overlaps <= iou_threshold]
    return out


def ssd_detections(regressors: np.ndarray, classificators: np.ndarray, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """A batch of raw outputs → per image, its detections (box, score, keypoints), best first."""
    size = params["input_size"]
    anchors = ssd_anchors(size, params["strides"], params.get("anchors_per_layer", 2), params.get("anchor_offset", 0.5))
    if regressors.shape[1] != len(anchors):
        raise ValueError(f"the model gives {regressors.shape[1]} anchors, the step lays out {len(anchors)}")
    scale = params.get("scale", [size[1], size[0]])
    threshold = float(params.get("score_threshold", 0.5))
    results = []
    for raw, logits in zip(regressors, classificators):
        boxes, scores, points = decode(raw, logits, anchors, scale, params.get("keypoints", 0),
                                       params.get("score_clip", 100.0))
        keep = scores >= threshold
        merged = weighted_nms(boxes[keep], scores[keep], points[keep], float(params.get("iou_threshold", 0.3)),
                              int(params.get("max_detections", 100)))
        results.append([{"box": box.tolist(), "score": score, "keypoints": kps.tolist()} for box, score, kps in merged])
    return results


def place_detections(manifest: Any, images: Sequence[Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Detections normalised to the letterboxed input → pixels of each original image.

    `images` are what was sent (bytes, or PIL images for video frames); only their headers are
    read for the size. Results without detections pass through unchanged.
    """
    letterbox = next((s.params for s in manifest.preprocessing if s.kind == "letterbox"), None)
    if letterbox is None or not any("detections" in r for r in results):
        return results
    from bushu.runtime.processing import image_size, letterbox_to_image

    names = next((s.params.get("keypoint_names") for s in manifest.postprocessing if s.kind == "ssd_detections"), None)
    for image, result in zip(images, results):
        size = image_size(image)
        placed = []
        for det in result.get("detections", []):
            corners = letterbox_to_image(np.asarray(det["box"]).reshape(2, 2), size, letterbox["size"])
            corners = np.clip(corners, 0, [size[0], size[1]])
            points = letterbox_to_image(np.asarray(det["keypoints"]).reshape(-1, 2), size, letterbox["size"])
            entry: dict[str, Any] = {"box": [round(float(v), 1) for v in corners.ravel()], "score": round(det["score"], 4)}
            if len(points):
                entry["landmarks"] = [
                    {**({"name": names[j]} if names and j < len(names) else {}), "x": round(float(x), 1), "y": round(float(y), 1)}
                    for j, (x, y) in enumerate(points)
                ]
            placed.append(entry)
        result["detections"] = placed
    return results
