"""What this CPU does natively, for the choices that depend on it (serving and training dtype).

oneDNN runs bf16 on any x86 CPU, but without AVX512-BF16 or AMX it emulates it: on such a
2-core Xeon a [8x960]@[960x2560] matmul took 950 us in bf16 and 429 us in fp32, so serving bf16
there is twice as slow as fp32, not faster.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell native bf16 from oneDNN's slow emulation
        return ""


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx() -> bool:
    """True where bf16 is what training picks on CPU: AMX tiles train ~5x faster than fp32.

    AVX512-BF16 alone is not enough: on such a 2-core Xeon a SmolLM2-135M LoRA step (4 x 512
    tokens) took ~12 s under bf16 autocast and ~8 s in fp32, so training stays fp32 there.
    """
    return "amx_bf16" in _cpu_flags()
