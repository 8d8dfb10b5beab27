"""bushu (部署, "deploy"): a trained model to a fast, verified, protected inference service.

`import bushu` stays light: torch, onnxruntime and the server are imported where used.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime 1.32 sends usage telemetry (a DNS lookup, then HTTPS to
# mobile.events.data.microsoft.com) from any process that runs a session, Linux included;
# a deployment tool must not phone home. Set before any `import onnxruntime`, which reads it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# OpenVINO's and NNCF's telemetry (sent from `import openvino` on): dropped in-process, see bushu.offline.
from bushu.offline import no_openvino_telemetry  # noqa: E402

no_openvino_telemetry()

try:
    __version__ = version("bushu")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from bushu.errors import BushuError, ExportError, IntegrityError, InvalidInput, NotFound, PackageError
from bushu.runtime.loader import load

__all__ = [
    "BushuError",
    "ExportError",
    "IntegrityError",
    "InvalidInput",
    "NotFound",
    "PackageError",
    "__version__",
    "load",
]
