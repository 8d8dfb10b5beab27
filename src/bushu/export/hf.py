"""Hugging Face encoders → text packages: tokenizer as pre-processing, pooled embedding inside.

`bushu pack DIR` of a transformers directory (config.json, weights, tokenizer.json) exports
the encoder wrapped in a small module that also mean-pools the last hidden state over the
attention mask and L2-normalises it, so the ONNX graph itself returns `last_hidden_state` and
`embedding` — the pooling is verified with the rest, and every runtime computes it the same.
Only local files are read (offline): nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bushu.errors import InvalidInput, NotFound
from bushu.export.pack import pack_module
from bushu.export.specs import parse_input_spec
from bushu.package.manifest import Manifest, TensorSpec
from bushu.runtime.hf_text import tokenize_step

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
OUTPUTS = ["last_hidden_state", "embedding"]
#: The encoder's transformers config, kept in the package so its architecture can be rebuilt
#: around the package's weights (explanations, distilled students) without the source directory.
CONFIG_FILE = "source/config.json"
#: Ranges that verify an encoder export: every row attends to at least its first token.
VERIFY_RANGES = {"attention_mask": (1, 2)}
#: TorchScript first: it exports the classic attention pattern that ONNX Runtime knows how to fuse.
EXPORTERS = ("torchscript", "dynamo")


#: Architecture suffixes whose head packing as an encoder would drop: refused, never repurposed.
_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMaskedLM",
          "ForMultipleChoice", "ForNextSentencePrediction", "ForPreTraining")
_GENERATORS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def is_hf_directory(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def hf_task(directory: str | Path) -> str:
    """What a transformers directory holds, from its config: "feature-extraction" (an encoder),
    or the generation task of a language model bushu can run; anything else is refused by name."""
    config = json.loads((Path(directory) / "config.json").read_text())
    names = config.get("architectures") or []
    generative = config.get("is_encoder_decoder") or any(n.endswith(_GENERATORS) for n in names)
    if generative or config.get("model_type") in ("gpt2", "t5"):
        from bushu.generate.models import architecture

        return architecture(config)[0]
    heads = [n for n in names if n.endswith(_HEADS)]
    if heads:
        raise InvalidInput(
            f"{directory}: {heads[0]} has a task head bushu does not pack; supported: encoders (…Model) as "
            "feature-extraction, GPT-2 causal LMs as text-generation, T5 as text2text-generation")
    return "feature-extraction"


def pooled_encoder(encoder):  # -> torch.nn.Module
    import torch

    class PooledEncoder(torch.nn.Module):
        """The encoder, plus the mean-pooled, L2-normalised embedding sentence-transformers makes."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(mean, dim=-1)

    return PooledEncoder().eval()


def encoder_config(manifest: Manifest, read: Callable[[str], bytes]) -> dict | None:
    """An encoder package's transformers config: its own CONFIG_FILE (read with `read`, so an
    encrypted package is decrypted and every file re-hashed), or, in a package packed before bushu
    kept it, its source directory's config.json while that exists; None when neither is there."""
    if CONFIG_FILE in manifest.files:
        return json.loads(read(CONFIG_FILE))
    source = Path(manifest.provenance.source) / "config.json"
    return json.loads(source.read_text()) if source.is_file() else None


def encoder_from_config(config: dict):  # -> torch.nn.Module
    """The pooled encoder's architecture from a transformers config (a dict), with fresh weights."""
    from transformers import AutoConfig, AutoModel

    settings = dict(config)
    built = AutoConfig.for_model(settings.pop("model_type"), **settings)
    # Eager attention exports the classic attention pattern that ONNX Runtime knows how to fuse.
    return pooled_encoder(AutoModel.from_config(built, attn_implementation="eager"))


def pack_hf_encoder(
    directory: str | Path, out: str | Path, *, name: str | None = None, version: str = "1",
    max_length: int | None = None, force: bool = False,
) -> Manifest:
    """Export a local transformers encoder as a verified text package (see the module docstring)."""
    root = Path(directory)
    if not is_hf_directory(root):
        raise NotFound(f"{root}: not a transformers model directory (config.json is missing)")
    task = hf_task(root)
    if task != "feature-extraction":
        raise InvalidInput(f"{root}: a {task} model is not an encoder; `bushu pack` packs it for generation")
    if not (root / "tokenizer.json").is_file():
        raise InvalidInput(f"{root}: no tokenizer.json; bushu needs the fast tokenizer's file to tokenize")
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError:
        raise InvalidInput("packing a Hugging Face model needs transformers: pip install 'bushu[hf]'") from None
    config = AutoConfig.from_pretrained(str(root), local_files_only=True)
    # Eager attention exports the classic attention pattern that ONNX Runtime knows how to fuse.
    encoder = AutoModel.from_pretrained(str(root), local_files_only=True, attn_implementation="eager")
    tokenizer_config = json.loads((root / "tokenizer_config.json").read_text()) if (
        root / "tokenizer_config.json").is_file() else {}
    limit = min(int(tokenizer_config.get("model_max_length", 512)), int(config.max_position_embeddings))
    length = max_length or min(limit, 256)
    if length > config.max_position_embeddings:
        raise InvalidInput(f"max_length {length} exceeds the model's {config.max_position_embeddings} positions")
    # The ids index the vocabulary and the mask is 0 or 1: the server refuses anything else.
    inputs = [TensorSpec.model_validate({**parse_input_spec(f"{name}:INT64:batch,sequence").model_dump(), "range": span})
              for name, span in (("input_ids", (0, config.vocab_size)), ("attention_mask", (0, 2)))]
    extra = {f"tokenizer/{f}": root / f for f in TOKENIZER_FILES if (root / f).is_file()}
    extra[CONFIG_FILE] = root / "config.json"
    return pack_module(
        pooled_encoder(encoder), inputs, out,
        name=name or _name(root), version=version, task="feature-extraction", output_names=OUTPUTS,
        preprocessing=[tokenize_step("tokenizer/tokenizer.json", length, [s.name for s in inputs])],
        source=str(root), value_ranges={"input_ids": (0, config.vocab_size), **VERIFY_RANGES},
        extra_files=extra, exporters=EXPORTERS, force=force,
    )


def _name(root: Path) -> str:
    parts = [p for p in root.resolve().parts if p not in ("model", "models")]
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in parts[-1]).strip("-._")
    return cleaned or "encoder"
