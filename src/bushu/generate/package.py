"""A generation package on disk → a ready `EngineCore` (model, cache, tokenizer, config).

Layout: `model/config.json` and `model/model.safetensors` (a plain `transformers` checkpoint),
`tokenizer/tokenizer.json`, `generation.json`. Only files the manifest lists (and hashes) are read.
"""

from __future__ import annotations

import json
from pathlib import Path

from bushu.errors import InvalidInput, PackageError
from bushu.generate.config import CONFIG_FILE, EngineSettings, GenerationConfig
from bushu.package.manifest import GENERATION_TASKS
from bushu.generate.engine import EngineCore, GenerationObserver
from bushu.generate.text import TextCodec
from bushu.package.manifest import Manifest

MODEL_CONFIG = "model/config.json"
WEIGHTS = "model/model.safetensors"
TOKENIZER = "tokenizer/tokenizer.json"


def is_generation(manifest: Manifest) -> bool:
    return manifest.task in GENERATION_TASKS


def open_core(root: Path, manifest: Manifest, settings: EngineSettings | None = None,
              observer: GenerationObserver | None = None, variant: str | None = None) -> EngineCore:
    """Build the engine for a checked package (the caller verified its hashes), running `variant`
    (default: the manifest's); on a GPU the decode step is always PyTorch's."""
    import dataclasses

    try:
        import torch
    except ImportError:
        raise InvalidInput("generation needs torch: pip install 'bushu[generate]'") from None
    from bushu.generate.kv_cache import KVCache
    from bushu.generate.models import load_model

    settings = settings or EngineSettings()
    if not is_generation(manifest):
        raise InvalidInput(f"{manifest.name} is a {manifest.task} package, not a generation package")
    for rel in (MODEL_CONFIG, WEIGHTS, TOKENIZER, CONFIG_FILE):
        if rel not in manifest.files:
            raise PackageError(f"{root}: a generation package lists {rel}; this one does not")
    if manifest.encryption is not None:
        raise PackageError("encrypted generation packages are not supported yet")
    name = variant or manifest.default_variant
    if name not in manifest.variants:
        raise InvalidInput(f"variant {name!r} not in package {manifest.name}; it has {sorted(manifest.variants)}")
    chosen = manifest.variants[name]
    decode = chosen.options.get("decode", "pytorch") if settings.device == "cpu" else "pytorch"
    step = chosen.options.get("step") if decode in ("openvino", "onnxruntime") else None
    if step is not None and step not in manifest.files:
        raise PackageError(f"{root}: variant {name!r} runs {step}, which the manifest does not list")
    # An OpenVINO or ONNX Runtime variant runs its step graph (prefill and decode) there; the PyTorch
    # weights stay at the settings' precision for what remains in PyTorch. A PyTorch bf16 variant runs in bf16.
    precision = chosen.precision if decode == "pytorch" and chosen.precision in ("bf16", "fp16") else settings.precision
    settings = dataclasses.replace(settings, decode=decode, precision=precision,
                                   step_file=str(root / step) if step else None,
                                   step_activations=chosen.options.get("activations", "f32"))
    config = GenerationConfig.model_validate_json((root / CONFIG_FILE).read_bytes())
    device = settings.device
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device 'cuda' asked for, but torch sees no CUDA device", status=503)
    model = load_model(json.loads((root / MODEL_CONFIG).read_text()), root / WEIGHTS,
                       dtype=settings.precision, device=device)
    cache = KVCache(*model.cache_shape(), dtype=model.dtype, device=device, max_slots=settings.max_sequences,
                    max_length=min(config.context + 1, settings.max_tokens_in_flight + 1),
                    **model.cache_extra(config))
    codec = TextCodec(root / TOKENIZER, add_special_tokens=config.add_special_tokens)
    return EngineCore(model, cache, codec, config, settings, observer)
