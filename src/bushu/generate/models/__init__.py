"""bushu's own forward passes for the architectures it generates with, over a slot KV cache.

Why not the `transformers` modules themselves: their caches grow per request and their batched
decode pads every sequence to the longest, so continuous batching (sequences of different
lengths joining and leaving between steps) would copy every cache at every step. These modules
read the same safetensors weights and the same config.json, write each new key/value straight
into its sequence's slot, and are verified against `transformers` at pack time (logits per
step and greedy sequences), so the package stays a plain `transformers` checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bushu.errors import InvalidInput

#: config.json `model_type` → (task, architecture module). Anything else is refused, by name.
ARCHITECTURES = {"gpt2": ("text-generation", "gpt2"), "t5": ("text2text-generation", "t5"),
                 "marian": ("text2text-generation", "marian")}


def architecture(config: dict[str, Any]) -> tuple[str, str]:
    """(task, module name) for a transformers config, or a refusal naming what is supported."""
    kind = config.get("model_type")
    if kind not in ARCHITECTURES:
        raise InvalidInput(
            f"model_type {kind!r} ({', '.join(config.get('architectures') or ['no architectures'])}) "
            f"cannot be generated with; supported: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[kind]


def load_model(config: dict[str, Any], weights: Path, *, dtype: str = "fp32", device: str = "cpu") -> Any:
    """The architecture's module around the package's safetensors weights (never a pickle)."""
    import importlib

    import torch
    from safetensors.torch import load_file

    _, module = architecture(config)
    cls = importlib.import_module(f"bushu.generate.models.{module}").Model
    state = load_file(str(weights), device=device)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return cls(config, {k: v.to(torch_dtype) for k, v in state.items()})
