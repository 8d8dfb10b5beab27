"""Keep OpenVINO's and NNCF's usage telemetry on this machine.

`ov.convert_model` and NNCF's entry points report usage through `openvino_telemetry`, which is
on unless the user opted out (a consent file in their home), and sends from a background
thread to an address on the internet: on an offline or firewalled server that thread hangs
at exit, and a deployment tool must not phone out. Every report goes through one method,
`TelemetrySender.send`, which is made a no-op for this process; the user's consent file is
left alone.
"""

from __future__ import annotations


def no_openvino_telemetry() -> None:
    """Make OpenVINO's telemetry send nothing from this process (idempotent; no-op when absent)."""
    try:
        from openvino_telemetry.utils.sender import TelemetrySender
    except ImportError:
        return
    TelemetrySender.send = _drop  # type: ignore[method-assign]


def _drop(self, backend, message) -> None:  # noqa: ANN001 — openvino_telemetry's own signature
    """Messages are dropped here, before any socket is opened."""
