"""Keep OpenVINO's and NNCF's usage telemetry on this machine.

`import openvino` itself, `ov.convert_model` and NNCF's entry points report usage through
`openvino_telemetry`, which is on unless the user opted out (a consent file in their home): a
child process looks up and posts to an address on the internet (seen with strace: a DNS query
at `import openvino`). A deployment tool must not phone out, and on an offline server those
reports hang. Every report goes through one method, `TelemetrySender.send`, which is made a
no-op for this process the moment that module is imported, whoever imports it; the user's
consent file is left alone. `import bushu` installs the hook (cheap: nothing is imported until
OpenVINO is).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

SENDER = "openvino_telemetry.utils.sender"


def _drop(self: Any, backend: Any, message: Any) -> None:
    """Messages are dropped here, before any socket is opened."""


def _silence(module: Any) -> None:
    module.TelemetrySender.send = _drop


class _SilenceOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != SENDER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            _silence(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def no_openvino_telemetry() -> None:
    """Make OpenVINO's telemetry send nothing from this process (idempotent)."""
    if SENDER in sys.modules:
        _silence(sys.modules[SENDER])
    elif not any(isinstance(finder, _SilenceOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SilenceOnImport())
