"""Recommendations: factor contributions — which of the user's latent factors pushed each item.

bushu's recommender scores item i for user u as ⟨U[u], V[i]⟩ + b[i]; at serving time the user is
their learned factor vector, not their history (the history shaped U[u] during training, and
no longer enters the computation). So the faithful explanation is of that vector: integrated
gradients on U[u] from a zero baseline, which for this bilinear score is exact — factor f
contributes U[u,f]·V[i,f], and the contributions plus the item's bias are the score (the
convergence delta is rounding). Attributing to the history instead would explain a model that
is not the one answering.

As context — labelled so, not as attribution — each item also lists the user's seen items
nearest to it in item-factor space (cosine of V rows): the history that the user's factors
were fitted to, where it resembles the recommendation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import InvalidInput
from bushu.explain.base import ExplainOptions
from bushu.package.manifest import Manifest
from bushu.runtime.postprocessing import read_seen
from bushu.serve.predict import NaturalRequest, Predictor

SIMILAR_SEEN = 3
#: The score is linear in the user's factors: any number of steps is exact; a few suffice.
STEPS = 8


class RecommenderExplainer:
    def __init__(self, module: Any, manifest: Manifest, root: Path) -> None:
        import torch

        self.module = module
        self.predictor = Predictor(manifest, root)
        params = self.predictor.users
        assert params is not None
        self.indptr, self.indices = read_seen((root / params["seen"]).read_bytes(), params["seen"])
        factors = [m for m in module.modules() if isinstance(m, torch.nn.Embedding)]
        bias = [p for n, p in module.named_parameters() if n.endswith("bias")]
        if len(factors) != 2 or len(bias) != 1:
            raise InvalidInput(f"factor contributions need a user and an item embedding and an item bias; "
                               f"{type(module).__name__} has {len(factors)} embeddings and {len(bias)} biases")
        self.users, self.items = (f.weight.detach() for f in factors)
        self.bias = bias[0].detach()

    def explain(self, request: NaturalRequest, served: list[dict[str, Any]],
                options: ExplainOptions) -> list[dict[str, Any]]:
        import torch
        from captum.attr import IntegratedGradients

        users = next(iter(self.predictor.tensors(request).values()))
        norms = torch.linalg.vector_norm(self.items, dim=1).clamp(min=1e-12)
        results = []
        for user, answer in zip(users.tolist(), served):
            items = [entry["item"] for entry in answer.get("items", [])]
            if not items:
                raise InvalidInput("the served answer has no items to explain")
            with torch.no_grad():
                scores = self.module(torch.tensor([user]))[0]
            seen = self.indices[self.indptr[user] : self.indptr[user + 1]]
            source_top = torch.argsort(scores.masked_fill(torch.from_numpy(np.isin(
                np.arange(len(scores)), seen)), -torch.inf), descending=True, stable=True)[: len(items)].tolist()
            factors = self.users[user][None].clone().requires_grad_()
            chosen = torch.tensor(items)
            ig = IntegratedGradients(lambda u: u @ self.items[chosen].T + self.bias[chosen])
            explained = []
            for column, item in enumerate(items):
                contributions, delta = ig.attribute(factors, baselines=torch.zeros_like(factors), target=column,
                                                    n_steps=options.steps or STEPS, return_convergence_delta=True)
                cosine = (self.items[seen] @ self.items[item]) / (norms[seen] * norms[item])
                nearest = torch.argsort(cosine, descending=True)[:SIMILAR_SEEN]
                explained.append({
                    "item": item, "score": float(scores[item]), "bias": float(self.bias[item]),
                    "factors": [float(c) for c in contributions[0].detach()],
                    "convergence_delta": float(delta[0]),
                    "similar_seen": [{"item": int(seen[j]), "cosine": float(cosine[j])} for j in nearest],
                })
            agrees = source_top == items
            result: dict[str, Any] = {
                "method": "factor_contributions", "user": user, "items": explained, "agrees": agrees,
                "source_items": source_top, "seen": len(seen),
                "baseline": "zero user factors (the score is then the item's bias)",
                "similar_seen_is": "context, not attribution: seen items nearest each item in item-factor space",
            }
            if not agrees:
                result["note"] = (f"the served variant recommends {items} but the source module ranks {source_top}; "
                                  "the contributions explain the source module's scores for the served items")
            results.append(result)
        return results
