"""The typed manifest (`bushu.json`): everything the runtime needs to call a model.

The manifest is the contract between the parts: the exporter and optimiser write it, the
runtime and server only read it. It lists every file with its SHA-256 and carries a digest of
its own canonical form, so a changed byte anywhere in the package is detected.
"""

from __future__ import annotations

import hashlib
import re
import sys
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FORMAT_VERSION = 1
MANIFEST_NAME = "bushu.json"
#: Tasks whose variants run in bushu's generation engine: bushu's own forward passes, built from
#: the package's `config.json` (data), never from a class that `provenance.source` names.
GENERATION_TASKS = ("text-generation", "text2text-generation")

#: Datatypes of the Open Inference Protocol v2, by their V2 names.
V2_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
)
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]


def canonical_digest(body: dict[str, Any]) -> str:
    """SHA-256 of sorted-key compact JSON: the bytes a manifest's digest (and signature) cover."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One named input or output: V2 datatype and shape, -1 where an axis is dynamic."""

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: list[int]
    #: Names of the dynamic axes ("batch", "sequence"); None for fixed axes.
    dims: list[str | None] | None = None
    #: Valid values `[low, high)` of an integer input that indexes a table (vocabulary size,
    #: user count): the server refuses a request with a value outside it before it is batched.
    range: tuple[int, int] | None = None

    @field_validator("shape")
    @classmethod
    def _dims_are_sizes(cls, shape: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in shape):
            raise ValueError(f"shape {shape}: each axis is a positive size or -1 (dynamic)")
        return shape

    @model_validator(mode="after")
    def _names_match_dynamic_axes(self) -> TensorSpec:
        if self.dims is not None:
            if len(self.dims) != len(self.shape):
                raise ValueError(f"{self.name}: dims {self.dims} and shape {self.shape} differ in rank")
            for size, dim in zip(self.shape, self.dims):
                if (size == -1) != (dim is not None):
                    raise ValueError(f"{self.name}: only dynamic (-1) axes are named, got {self.dims}")
        return self

    @model_validator(mode="after")
    def _range_fits_an_integer_input(self) -> TensorSpec:
        if self.range is not None:
            if not self.datatype.startswith(("INT", "UINT")):
                raise ValueError(f"{self.name}: a range is for integer inputs, not {self.datatype}")
            if self.range[0] >= self.range[1]:
                raise ValueError(f"{self.name}: range {list(self.range)} is empty (low must be below high)")
        return self

    def dim_names(self) -> list[str | None]:
        return list(self.dims) if self.dims is not None else [None] * len(self.shape)


#: The params that name package files, by step kind; beyond these, any param called `file`
#: or `path`, or ending in `_file` or `_path`, names one too.
STEP_FILE_PARAMS: dict[str, tuple[str, ...]] = {
    "tokenize": ("vocab",),
    "hf_tokenize": ("file",),
    "top_k_unseen": ("seen",),
}


class Step(_Strict):
    """One pre- or post-processing step, by kind, with its parameters."""

    kind: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    def file_params(self) -> dict[str, Any]:
        """The params that name package files (their values must be listed package paths)."""
        named = STEP_FILE_PARAMS.get(self.kind, ())
        return {key: value for key, value in self.params.items()
                if key in named or key in ("file", "path") or key.endswith(("_file", "_path"))}


class Variant(_Strict):
    """One runnable form of the model: the file, how to run it, and what it was measured at."""

    file: str
    backend: Literal["onnxruntime", "pytorch", "openvino"] = "onnxruntime"
    device: Literal["cpu", "cuda"] = "cpu"
    precision: str = "fp32"
    #: Worst relative error per output against the source model, as measured at export.
    max_rel_error: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    #: Backend settings, e.g. {"compile": true, "buckets": [1, 8, 32]} for the PyTorch backend.
    options: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""


class Provenance(_Strict):
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bushu_version: str
    source: str = ""
    #: The constructor arguments that rebuild `source` (`module:Class`) around the weights.
    source_kwargs: dict[str, Any] = Field(default_factory=dict)
    source_sha256: str | None = None
    exporter: str | None = None
    #: The source framework's version (and the reference that verified it), for imported models.
    framework_version: str | None = None
    #: The source model's weights inside the package (safetensors), when it came from PyTorch.
    weights_file: str | None = None


class Encryption(_Strict):
    """Which files are encrypted at rest, and with which key (by id, never the key itself)."""

    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    files: list[str] = Field(min_length=1)


def _is_safe_relative(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    return bool(path) and not path.startswith("/") and ".." not in parts and "" not in parts and "." not in parts


_MODULE_REF = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def module_ref_problem(ref: str) -> str | None:
    """Why `ref` cannot be the module class a manifest rebuilds its model from (None if it can).

    A manifest is data: what it names is imported from the installed packages, never from a
    file path or the current directory, and never from the standard library, which holds no
    `torch.nn.Module` but does hold `os:system` and `subprocess:Popen`.
    """
    if not _MODULE_REF.fullmatch(ref) or ref.split(":")[0].endswith(".py"):
        return ("expected an importable module and class, package.module:Class "
                "(a file path such as model.py:Net is for `bushu pack` only)")
    top = ref.split(":")[0].split(".")[0]
    if top in sys.stdlib_module_names or top == "__main__":
        return f"{top!r} is part of Python itself, not a module that defines a torch.nn.Module"
    return None


class Manifest(_Strict):
    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    version: str = Field(default="1", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    task: str = "generic"
    framework: str
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    labels: list[str] | None = None
    preprocessing: list[Step] = Field(default_factory=list)
    postprocessing: list[Step] = Field(default_factory=list)
    variants: dict[str, Variant] = Field(min_length=1)
    default_variant: str
    metrics: dict[str, float] = Field(default_factory=dict)
    provenance: Provenance
    encryption: Encryption | None = None
    #: SHA-256 of every file in the package but the manifest itself, by relative path.
    files: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        for group in (self.inputs, self.outputs):
            names = [t.name for t in group]
            if len(set(names)) != len(names):
                raise ValueError(f"tensor names repeat: {names}")
        if self.default_variant not in self.variants:
            raise ValueError(
                f"default_variant {self.default_variant!r} is not one of {sorted(self.variants)}"
            )
        for path, digest in self.files.items():
            if not _is_safe_relative(path) or path == MANIFEST_NAME:
                raise ValueError(f"file path {path!r} must be relative, inside the package")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"file {path!r}: {digest!r} is not a SHA-256 hex digest")
        for key, variant in self.variants.items():
            if variant.file not in self.files:
                raise ValueError(f"variant {key!r} runs {variant.file!r}, which is not listed in files")
            weights = variant.file[: -len(".xml")] + ".bin"
            if variant.backend == "openvino" and variant.file.endswith(".xml") and weights not in self.files:
                raise ValueError(f"variant {key!r} runs OpenVINO IR {variant.file!r}, whose weights {weights!r} "
                                 "are not listed in files")
            builds_source = variant.backend == "pytorch" and self.task not in GENERATION_TASKS
            if builds_source and (problem := module_ref_problem(self.provenance.source)):
                raise ValueError(f"variant {key!r} runs on PyTorch, which builds the model from provenance.source "
                                 f"{self.provenance.source!r}: {problem}")
        for where, steps in (("preprocessing", self.preprocessing), ("postprocessing", self.postprocessing)):
            for i, step in enumerate(steps):
                for param, path in step.file_params().items():
                    if not isinstance(path, str) or not _is_safe_relative(path) or path not in self.files:
                        raise ValueError(
                            f"{where} step {i} ({step.kind}) names {path!r} in params.{param}: a step may only "
                            "name a file of the package, by a relative path listed in files")
        if self.encryption is not None:
            unlisted = [f for f in self.encryption.files if f not in self.files]
            if unlisted:
                raise ValueError(f"encrypted files {unlisted} are not listed in files")
        weights = self.provenance.weights_file
        if weights is not None and weights not in self.files:
            raise ValueError(f"provenance names weights {weights!r}, which is not listed in files")
        if self.labels is not None and len(self.labels) == 0:
            raise ValueError("labels, when given, must not be empty")
        return self

    # -- (de)serialisation with a self-digest -------------------------------------------------

    def digest(self) -> str:
        return canonical_digest(self.model_dump(mode="json"))

    def to_json(self) -> bytes:
        body = self.model_dump(mode="json")
        body["digest"] = canonical_digest(body)
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
