"""Explanations with Captum on a package's PyTorch source module, next to the served answer.

One module per modality (`image`, `text`, `recsys`), the source module's rebuild (`source`),
and `dispatch.explainer_for`, which picks the explainer from what the package takes. Captum
and torch are imported only when an explanation is asked for.
"""

from bushu.explain.base import ExplainOptions, Explainer
from bushu.explain.dispatch import KINDS, explainer_for, input_kind

__all__ = ["KINDS", "ExplainOptions", "Explainer", "explainer_for", "input_kind"]
