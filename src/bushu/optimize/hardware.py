"""What this machine can do fast: CPU instruction sets and a CUDA device.

int8 only pays where the CPU has integer dot-product instructions (AVX-512 VNNI, AVX-VNNI,
AMX-INT8); bf16 only where it has AVX-512 BF16 or AMX-BF16. Without them those variants are
slower than fp32, so the search skips them and says why rather than measuring a sure loss.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

_INTERESTING = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class Hardware:
    cpu: str
    cores: int
    flags: frozenset[str] = field(default_factory=frozenset)
    cuda: str | None = None  # the CUDA device's name, when torch sees one

    @property
    def int8_fast(self) -> bool:
        """Integer dot-product instructions, without which int8 loses to fp32."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def bf16_fast(self) -> bool:
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    def summary(self) -> dict[str, object]:
        return {
            "cpu": self.cpu, "cores": self.cores, "flags": sorted(self.flags & set(_INTERESTING)),
            "int8_fast": self.int8_fast, "bf16_fast": self.bf16_fast, "cuda": self.cuda,
        }


def _cpuinfo(path: Path) -> tuple[str, frozenset[str]]:
    name, flags = platform.processor() or platform.machine(), frozenset()
    try:
        text = path.read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return name, flags


def _cuda_device() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def probe(cpuinfo: Path = Path("/proc/cpuinfo")) -> Hardware:
    """Read the CPU's flags from /proc/cpuinfo and ask torch (if installed) for a CUDA device."""
    name, flags = _cpuinfo(cpuinfo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Hardware(cpu=name, cores=cores, flags=flags, cuda=_cuda_device())
