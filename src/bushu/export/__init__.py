"""Source models → verified ONNX packages."""

from bushu.export.importers import pack_imported
from bushu.export.pack import framework_of, pack_module, pack_onnx
from bushu.export.specs import parse_input_spec
from bushu.export.torch_onnx import ExportResult, export_module

__all__ = ["ExportResult", "export_module", "framework_of", "pack_imported", "pack_module", "pack_onnx",
           "parse_input_spec"]
