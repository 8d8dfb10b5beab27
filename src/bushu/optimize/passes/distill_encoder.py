"""Students of a transformers encoder: the same architecture with fewer layers.

A packed encoder (`bushu pack` of a transformers directory) names a directory, not a class, so
its teacher is rebuilt from the transformers config the package carries and the package's own
weights. Narrowing an encoder's hidden size would leave nothing of the teacher to start from;
dropping layers keeps most of it. So a student keeps the hidden size and `scale` of the layers
(at least one): the teacher's embeddings and the layers spread evenly through its depth, the
last one always among them (as DistilBERT and MiniLM's own students are started), and is then
trained on the teacher's pooled embeddings.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from bushu.optimize.passes import BuildContext
from bushu.runtime import hf_text

#: Fine-tuning a pretrained transformer takes a far smaller step than training a small net afresh.
LEARNING_RATE = 2e-4


def is_encoder(ctx: BuildContext) -> bool:
    return any(step.kind == hf_text.STEP_KIND for step in ctx.manifest.preprocessing)


def encoder_teacher(ctx: BuildContext) -> Any:  # -> torch.nn.Module | str (why not)
    """The package's encoder with its own weights, or why it cannot be rebuilt."""
    from safetensors.torch import load_file

    from bushu.export.hf import CONFIG_FILE, encoder_config, encoder_from_config

    config = encoder_config(ctx.manifest, lambda file: (ctx.staging / file).read_bytes())
    if config is None:
        return (f"the package has no {CONFIG_FILE} (packed by an earlier bushu) and its source directory "
                f"{ctx.manifest.provenance.source} is gone: pack it again to distil it")
    if "num_hidden_layers" not in config:
        return f"a {config.get('model_type')} config names no num_hidden_layers: no shallower student to describe"
    module = encoder_from_config(config)
    module.load_state_dict(load_file(ctx.staging / ctx.manifest.provenance.weights_file), strict=True)
    return module.eval()


def kept_layers(layers: int, scale: float) -> list[int]:
    """Which of the teacher's `layers` a student at `scale` starts from: spread evenly, the last kept."""
    keep = max(1, round(layers * scale))
    return [round((i + 1) * layers / keep) - 1 for i in range(keep)]


def encoder_student(teacher: Any, scale: float) -> tuple[Any, str, dict[str, Any]]:
    """The student module (started from the teacher), how it was started, and its config."""
    from bushu.export.hf import encoder_from_config

    config = teacher.encoder.config.to_dict()
    layers = kept_layers(config["num_hidden_layers"], scale)
    config = {**copy.deepcopy(config), "num_hidden_layers": len(layers)}
    student = encoder_from_config(config)
    theirs = teacher.state_dict()
    renamed = {name: theirs[re.sub(r"\.layer\.(\d+)\.", lambda m: f".layer.{layers[int(m[1])]}.", name)]
               for name in student.state_dict()}
    student.load_state_dict(renamed, strict=True)
    started = f"the teacher's embeddings and its layers {', '.join(map(str, layers))}"
    return student, started, {"num_hidden_layers": len(layers)}
