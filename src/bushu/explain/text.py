"""Text: layer integrated gradients on the token embeddings → one score per token.

Attributions are taken at the embedding layer's output and summed over its dimensions, so
each token gets one number, and the numbers sum to f(text) − f(baseline) (Captum's convergence
delta says how nearly). The baseline keeps the text's length and its padding mask and changes
only what the words are: for a classifier, every token's embedding is replaced by zeros (the
padding vector, the embedding of "no word"), so a word's score is what its vector adds; for a
BERT-style encoder, `[PAD]` stands in for every token between `[CLS]` and `[SEP]`, the usual
reference for a model whose attention mask is an input of its own.

- Classifiers explain a label's logit (default: the served answer's label). When the labels
  include "positive" and "negative", each token also gets a `polarity`: its attribution to
  logit(positive) − logit(negative), positive where the word pushes towards "positive".
- Encoders have no label: they explain the cosine between the text's embedding and the
  embedding of `query` (what made this text match a search), or, without a query, of the text
  itself (which tokens its embedding is made of).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import InvalidInput
from bushu.explain.base import ExplainOptions, agreement, label_index
from bushu.package.manifest import Manifest
from bushu.runtime import hf_text
from bushu.serve.predict import NaturalRequest, Predictor

#: Rows of the integration path run at once: bounds an explanation's memory.
CHUNK = 64
#: Default steps, seen here: the sentiment LSTM's delta stayed under 0.005 at 128 (0.04 at 32);
#: MiniLM is smooth and costly, and stayed under 0.005 at 16.
CLASSIFIER_STEPS, ENCODER_STEPS = 128, 16


def _integrate(forward: Callable[..., Any], layer: Any, ids: Any, baseline: Any, steps: int,
               extra: tuple[Any, ...] = ()) -> tuple[np.ndarray, float]:
    """Per-token attributions [sequence] of the scalar `forward(ids, *extra)` from baseline ids
    (the path runs between their embeddings), and the delta."""
    from captum.attr import LayerIntegratedGradients

    attributions, delta = LayerIntegratedGradients(forward, layer).attribute(
        ids, baselines=baseline, additional_forward_args=extra or None, n_steps=steps,
        internal_batch_size=CHUNK, return_convergence_delta=True)
    return attributions.sum(-1)[0].detach().numpy(), float(delta[0])


def _integrate_from_zero(forward: Callable[[Any], Any], layer: Any, ids: Any, steps: int) -> tuple[np.ndarray, float]:
    """Per-token attributions of the scalar `forward(ids)` along the path from all-zero embeddings
    (the padding vector) to the text's own, with the ids — and so the padding mask — unchanged.
    Captum's layer IG takes its baseline as ids, which would change the mask too; here the
    embedding layer's output is replaced by a forward hook, so the path is in embedding space."""
    import torch
    from captum.attr import IntegratedGradients

    def from_embeddings(embedded: Any, token_ids: Any) -> Any:
        handle = layer.register_forward_hook(lambda module, inputs, output: embedded)
        try:
            return forward(token_ids)
        finally:
            handle.remove()

    with torch.no_grad():
        embedded = layer(ids)
    attributions, delta = IntegratedGradients(from_embeddings).attribute(
        embedded, baselines=torch.zeros_like(embedded), additional_forward_args=(ids,), n_steps=steps,
        internal_batch_size=CHUNK, return_convergence_delta=True)
    return attributions.sum(-1)[0].detach().numpy(), float(delta[0])


class ClassifierTextExplainer:
    """A text classifier whose input is one tensor of token ids (the `tokenize` step)."""

    def __init__(self, module: Any, manifest: Manifest, root: Path) -> None:
        self.module = module
        self.predictor = Predictor(manifest, root)
        self.tokenizer = self.predictor.tokenizer
        self.labels = list(manifest.labels or [])
        self.layer = self._embedding_layer(module)

    @staticmethod
    def _embedding_layer(module: Any) -> Any:
        import torch

        layers = [m for m in module.modules() if isinstance(m, torch.nn.Embedding)]
        if len(layers) != 1:
            raise InvalidInput(f"token attributions need one embedding layer; {type(module).__name__} has {len(layers)}")
        return layers[0]

    def explain(self, request: NaturalRequest, served: list[dict[str, Any]],
                options: ExplainOptions) -> list[dict[str, Any]]:
        import torch

        assert self.tokenizer is not None
        steps = options.steps or CLASSIFIER_STEPS
        results = []
        for text, answer in zip(request.items, served):
            ids = torch.from_numpy(self.tokenizer.encode_batch([text]))
            with torch.no_grad():
                logits = self.module(ids)[0]
            source = int(logits.argmax())
            served_label = answer.get("label")
            target = label_index(self.labels, options.target,
                                 self.labels.index(served_label) if served_label in self.labels else source)
            scores, delta = _integrate_from_zero(lambda x: self.module(x)[:, target], self.layer, ids, steps)
            tokens = [{"token": t, "score": float(s)} for t, s in zip(self.tokenizer.tokens(text), scores)]
            result: dict[str, Any] = {
                "method": "layer_integrated_gradients", "layer": "token embeddings",
                "target": self.labels[target] if self.labels else str(target),
                **agreement(served_label, self.labels[source] if self.labels else str(source)),
                "tokens": tokens, "convergence_delta": delta, "steps": steps,
                "baseline": "zero embeddings (the padding vector) in place of every token, the mask unchanged",
            }
            if {"positive", "negative"} <= set(self.labels):
                pos, neg = self.labels.index("positive"), self.labels.index("negative")
                polarity, polarity_delta = _integrate_from_zero(
                    lambda x: self.module(x)[:, pos] - self.module(x)[:, neg], self.layer, ids, steps)
                for token, value in zip(tokens, polarity):
                    token["polarity"] = float(value)
                result["polarity_delta"] = polarity_delta
            results.append(result)
        return results


class EncoderTextExplainer:
    """A Hugging Face encoder packaged by `export.hf` (ids + attention mask → pooled embedding)."""

    def __init__(self, module: Any, manifest: Manifest, root: Path) -> None:
        from tokenizers import Tokenizer

        self.module = module
        self.predictor = Predictor(manifest, root)
        step = self.predictor.hf_step
        assert step is not None
        self.step, self.root = step, root
        self.vocab = Tokenizer.from_file(str(root / step.params["file"]))
        self.layer = module.encoder.embeddings.word_embeddings

    def _inputs(self, text: str) -> tuple[Any, Any]:
        import torch

        arrays = hf_text.tokenize([text], self.step, self.root)
        return torch.from_numpy(arrays["input_ids"]), torch.from_numpy(arrays["attention_mask"])

    def _embed(self, ids: Any, mask: Any) -> Any:
        return self.module(ids, mask)[1]

    def explain(self, request: NaturalRequest, served: list[dict[str, Any]],
                options: ExplainOptions) -> list[dict[str, Any]]:
        import torch

        specials = {self.vocab.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")} - {None}
        pad = self.vocab.token_to_id("[PAD]") or 0
        steps = options.steps or ENCODER_STEPS
        results = []
        for text, answer in zip(request.items, served):
            if not isinstance(text, str):
                raise InvalidInput(f"expected text, got {type(text).__name__}")
            ids, mask = self._inputs(text)
            with torch.no_grad():
                embedding = self._embed(ids, mask)
                anchor = self._embed(*self._inputs(options.query)) if options.query is not None else embedding
            keep = torch.tensor([[int(i) in specials for i in ids[0]]])
            baseline = torch.where(keep, ids, pad)
            scores, delta = _integrate(lambda x, m: (self._embed(x, m) * anchor).sum(-1), self.layer, ids,
                                       baseline, steps, (mask,))
            tokens = [{"token": self.vocab.id_to_token(int(i)), "score": float(s), "special": int(i) in specials}
                      for i, s in zip(ids[0], scores)]
            served_vector = np.asarray(answer.get("embedding", []), dtype=np.float64)
            source_vector = embedding[0].double().numpy()
            cosine = float(served_vector @ source_vector / max(np.linalg.norm(served_vector), 1e-12)) if (
                served_vector.shape == source_vector.shape) else None
            result: dict[str, Any] = {
                "method": "layer_integrated_gradients", "layer": "word embeddings",
                "target": f"cosine to the query {options.query!r}" if options.query is not None
                else "cosine to the text's own embedding",
                "similarity": float((embedding * anchor).sum()),
                "served_cosine_to_source": cosine, "agrees": cosine is not None and cosine > 0.99,
                "tokens": tokens, "convergence_delta": delta, "steps": steps,
                "baseline": "[PAD] in place of every token but [CLS] and [SEP]",
            }
            if not result["agrees"]:
                result["note"] = ("the served variant's embedding differs from the source module's "
                                  f"(cosine {cosine}); the attributions explain the source module")
            results.append(result)
        return results
