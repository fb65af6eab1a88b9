"""What XLA needs to run jaxvis's steps fast: per-``jit`` compiler options (CPU only).

jaxlib 0.10 sends convolutions and dots to YNNPACK by default; on our 2-core AVX2 machines Eigen's
were about 1.3x faster over VGG16's 11 convolutions up to block5_conv1 (forward + input gradient,
batch 16; ``scripts/conv_layers.py``, docs/performance.md), so jaxvis compiles its steps with YNNPACK
off. The options are set per ``jit`` call, never through a global ``XLA_FLAGS``;
``JAXVIS_XLA_DEFAULTS=1`` keeps XLA's choice. On a GPU/TPU backend nothing is set.
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

_CPU_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type', ''),)  # no YNNPACK fusions: Eigen convs and dots


def backend_name(backend: str | None = None) -> str:
    return backend or jax.default_backend()


@functools.cache
def _cpu_options_work() -> bool:
    """Whether this jaxlib accepts the CPU options (an unknown option would fail every compile)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(_CPU_OPTIONS)).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - any refusal means: leave XLA's defaults alone
        return False
    return True


def compiler_options(backend: str | None = None) -> dict | None:
    """``compiler_options`` for ``jax.jit`` of jaxvis's steps: Eigen convolutions on CPU, else None."""
    if os.environ.get('JAXVIS_XLA_DEFAULTS', '') not in ('', '0') or backend_name(backend) != 'cpu':
        return None
    return dict(_CPU_OPTIONS) if _cpu_options_work() else None


def jit(fn, **kw):
    """``jax.jit(fn, compiler_options=compiler_options(), **kw)`` (the options read when called)."""
    return jax.jit(fn, compiler_options=compiler_options(), **kw)
