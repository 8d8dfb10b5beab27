"""Post-processing steps named in a manifest, turning a batch's outputs into answers.

The steps are data in the manifest; this module is their one implementation, so the CLI, the
tests and the server give the same answer. A `Postprocessor` is built once per loaded package
(it reads any files a step names, e.g. the items each user has seen) and then maps each
batch's raw outputs to named arrays:

- `softmax` {output, name}: probabilities from logits (FP32, same shape).
- `top_k` {k, scores}: `labels` (the manifest's labels, [batch, k]) and `scores` [batch, k].
- `top_k_unseen` {k, scores, input, seen, n_users}: for each user id in `input`, the k
  best-scored items it has not seen — `items` INT64 [batch, k] and `item_scores` FP32 [batch, k].
- `ssd_detections` {boxes, scores, input_size, strides, keypoints, ...}: anchor decoding and
  non-maximum suppression (`runtime.detection`) — `detections`, per row a list of
  {box, score, keypoints} normalised to the model's input.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import InvalidInput, PackageError
from bushu.package.manifest import Manifest, Step
from bushu.runtime.base import FileReader, disk_reader

Arrays = dict[str, np.ndarray]


def check_ids(values: Any, count: int, what: str = "user", input: str = "user") -> np.ndarray:
    """INT64 ids in [0, count), or an error naming the input, the first unknown id and the range
    (a negative id is refused too: it must never wrap around to another row)."""
    ids = np.asarray(values)
    if ids.dtype.kind not in "iu":
        raise InvalidInput(f"{what} ids must be integers, got {ids.dtype}")
    bad = ids[(ids < 0) | (ids >= count)]
    if bad.size:
        raise InvalidInput(f"unknown {what} id {int(bad.flat[0])}: this model knows {what}s 0..{count - 1} "
                           f"(input {input!r}, range [0, {count}))")
    return ids.astype(np.int64)


def read_seen(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of a CSR matrix of seen items per user, stored as .npz without pickles."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return arrays["indptr"], arrays["indices"]
    except (OSError, KeyError, ValueError) as exc:
        raise PackageError(f"cannot read the seen items {name}: {exc}") from None


class Postprocessor:
    """The manifest's post-processing steps, ready to apply to batches of one package."""

    def __init__(self, steps: Sequence[Step], *, labels: Sequence[str] | None = None,
                 root: str | Path | FileReader | None = None) -> None:
        """`root` is the package directory, or a reader of its files (`PackageFiles.read`)."""
        self._labels = np.asarray(labels, dtype=object) if labels else None
        self._read = root if callable(root) else disk_reader(Path(root)) if root is not None else None
        self._seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._steps: list[tuple[Callable[[Arrays, dict[str, Any], Arrays], None], dict[str, Any]]] = []
        known = {"softmax": self._softmax, "top_k": self._top_k, "top_k_unseen": self._top_k_unseen,
                 "ssd_detections": self._ssd_detections}
        for step in steps:
            if step.kind not in known:
                raise PackageError(f"unknown post-processing step {step.kind!r}; known: {sorted(known)}")
            if step.kind == "top_k_unseen":
                self._load_seen(step.params)
            self._steps.append((known[step.kind], step.params))

    @classmethod
    def for_package(cls, manifest: Manifest, root: str | Path | FileReader) -> Postprocessor:
        return cls(manifest.postprocessing, labels=manifest.labels, root=root)

    def check(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Refuse inputs a step cannot answer for (an unknown user id) before the model runs."""
        for _, params in self._steps:
            if "n_users" in params and params["input"] in inputs:
                check_ids(inputs[params["input"]], params["n_users"], input=params["input"])

    def __call__(self, outputs: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
                 k: int | None = None) -> Arrays:
        """Apply the steps; `k` replaces the k of steps that have one (a request's choice)."""
        state = dict(outputs)
        for fn, params in self._steps:
            fn(state, {**params, "k": k} if k and "k" in params else params, dict(inputs))
        return state

    # -- the steps ------------------------------------------------------------------------

    def _softmax(self, state: Arrays, params: dict[str, Any], inputs: Arrays) -> None:
        logits = state[params.get("output", "logits")].astype(np.float32)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        state[params.get("name", "probabilities")] = shifted / shifted.sum(axis=-1, keepdims=True)

    def _top_k(self, state: Arrays, params: dict[str, Any], inputs: Arrays) -> None:
        scores = state[params.get("scores", "probabilities")]
        k = min(int(params["k"]), scores.shape[-1])
        order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
        state["scores"] = np.take_along_axis(scores, order, axis=-1)
        state["labels"] = self._labels[order] if self._labels is not None else order

    def _top_k_unseen(self, state: Arrays, params: dict[str, Any], inputs: Arrays) -> None:
        users = check_ids(inputs[params["input"]], params["n_users"], input=params["input"]).reshape(-1)
        scores = state[params.get("scores", "scores")].astype(np.float32, copy=True)
        if scores.shape[0] != len(users):
            raise InvalidInput(f"{len(users)} user id(s) but {scores.shape[0]} row(s) of scores")
        indptr, indices = self._seen[params["seen"]]
        for row, user in enumerate(users):
            scores[row, indices[indptr[user] : indptr[user + 1]]] = -np.inf
        k = min(int(params["k"]), scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        state["items"] = order.astype(np.int64)
        state["item_scores"] = np.take_along_axis(scores, order, axis=1)

    def _ssd_detections(self, state: Arrays, params: dict[str, Any], inputs: Arrays) -> None:
        from bushu.runtime.detection import ssd_detections

        found = ssd_detections(state[params.get("boxes", "regressors")], state[params.get("scores", "classificators")],
                               params)
        state["detections"] = np.empty(len(found), dtype=object)
        state["detections"][:] = found

    def _load_seen(self, params: dict[str, Any]) -> None:
        if self._read is None:
            raise PackageError("top_k_unseen needs the package directory to read its seen items")
        indptr, indices = read_seen(self._read(params["seen"]), params["seen"])
        if len(indptr) != params["n_users"] + 1:
            raise PackageError(f"{params['seen']}: {len(indptr) - 1} users, the step says {params['n_users']}")
        self._seen[params["seen"]] = (indptr, indices)
