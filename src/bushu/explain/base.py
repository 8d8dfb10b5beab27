"""What every explainer shares: the request's options, and the answer's common fields.

An explanation is computed on the package's PyTorch source module (the model as trained), but
it is asked about the *served* answer: the explainer is handed the served variant's prediction,
explains that answer by default, and says whether the source module gives the same one — an
int8 variant may not, and then the explanation is of a model that answered differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bushu.errors import InvalidInput
from bushu.serve.predict import NaturalRequest

METHODS = ("integrated_gradients", "saliency")
#: Integration steps are the cost of an explanation: bounded so one request cannot hold the queue.
#: Each explainer has its own default, the fewest steps that kept the convergence delta under
#: 1e-2 on its app's model here (Gauss-Legendre points, Captum's default).
MIN_STEPS, MAX_STEPS = 8, 512


@dataclass(frozen=True)
class ExplainOptions:
    """What a caller may choose; every field has a default that suits the playground."""

    method: str = "integrated_gradients"
    #: Integration steps (None: the explainer's default).
    steps: int | None = None
    #: The label to explain (default: the served answer's label).
    target: str | None = None
    #: Embedding models: explain the similarity to this text (default: to the text's own embedding).
    query: str | None = None

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> ExplainOptions:
        """Options from a request's JSON (or query string); anything else in `doc` is ignored."""
        method = doc.get("method", cls.method)
        if method not in METHODS:
            raise InvalidInput(f"'method' must be one of {list(METHODS)}, not {method!r}")
        steps = doc.get("steps", cls.steps)
        if isinstance(steps, str) and steps.isdigit():
            steps = int(steps)
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                                  or not MIN_STEPS <= steps <= MAX_STEPS):
            raise InvalidInput(f"'steps' must be an integer from {MIN_STEPS} to {MAX_STEPS}")
        for key in ("target", "query"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise InvalidInput(f"{key!r} must be a string")
        return cls(method, steps, doc.get("target"), doc.get("query"))


class Explainer(Protocol):
    """One package's source module, ready to explain natural inputs next to served answers."""

    def explain(self, request: NaturalRequest, served: list[dict[str, Any]],
                options: ExplainOptions) -> list[dict[str, Any]]:
        """One explanation per item of `request`; `served` holds the served answer per item."""
        ...


def label_index(labels: list[str] | None, wanted: str | None, fallback: int) -> int:
    """The index of `wanted` among `labels` (an error naming the labels if absent), else `fallback`."""
    if wanted is None:
        return fallback
    if not labels or wanted not in labels:
        raise InvalidInput(f"target {wanted!r} is not one of the model's labels {labels}")
    return labels.index(wanted)


def agreement(served_label: str | None, source_label: str) -> dict[str, Any]:
    """`agrees`, and a note when the served variant's answer is not the source module's."""
    agrees = served_label is None or served_label == source_label
    answer: dict[str, Any] = {"source_label": source_label, "agrees": agrees}
    if not agrees:
        answer["note"] = (f"the served variant answered {served_label!r} but the source module answers "
                          f"{source_label!r}; the attributions explain the source module")
    return answer


def rounded(values: np.ndarray, digits: int = 6) -> list[Any]:
    """JSON-ready floats, rounded so a 32×32 map stays small on the wire."""
    return np.round(values.astype(np.float64), digits).tolist()
