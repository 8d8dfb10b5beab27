"""Source models → verified ONNX packages."""

from bushu.export.pack import pack_module, pack_onnx
from bushu.export.specs import parse_input_spec
from bushu.export.torch_onnx import ExportResult, export_module

__all__ = ["ExportResult", "export_module", "pack_module", "pack_onnx", "parse_input_spec"]
