"""Which explainer fits a package: chosen from what the package takes, as `Predictor` sees it."""

from __future__ import annotations

from pathlib import Path

from bushu.errors import InvalidInput, NotFound
from bushu.explain.base import Explainer
from bushu.explain.source import INSTALL_HINT, source_module
from bushu.package.manifest import Manifest
from bushu.serve.predict import Predictor

#: What each kind of package is explained by, for listings (the playground, errors).
KINDS = {"image": "integrated gradients or saliency on pixels",
         "text": "layer integrated gradients on token embeddings",
         "embedding": "layer integrated gradients on word embeddings, towards a query",
         "recommendation": "factor contributions (integrated gradients on the user's factors)"}


def input_kind(predictor: Predictor) -> str | None:
    """image, text, embedding, recommendation — or None for a package without natural input."""
    if predictor.images:
        return "image"
    if predictor.tokenizer is not None:
        return "text"
    if predictor.hf_step is not None:
        return "embedding"
    if predictor.users is not None:
        return "recommendation"
    return None


def explainer_for(root: Path, manifest: Manifest, key: bytes | None = None) -> Explainer:
    """Rebuild the package's source module and wrap it in its modality's explainer (slow: seconds)."""
    try:
        import captum  # noqa: F401
    except ImportError:
        raise NotFound(INSTALL_HINT) from None
    kind = input_kind(Predictor(manifest, root))
    if kind is None:
        raise InvalidInput(f"model {manifest.name!r} declares no natural input; there is nothing to explain")
    module = source_module(root, manifest, key)
    if kind == "image":
        from bushu.explain.image import ImageExplainer

        return ImageExplainer(module, manifest, root)
    if kind == "text":
        from bushu.explain.text import ClassifierTextExplainer

        return ClassifierTextExplainer(module, manifest, root)
    if kind == "embedding":
        from bushu.explain.text import EncoderTextExplainer

        return EncoderTextExplainer(module, manifest, root)
    from bushu.explain.recsys import RecommenderExplainer

    return RecommenderExplainer(module, manifest, root)
