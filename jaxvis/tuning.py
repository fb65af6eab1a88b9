"""What XLA:CPU needs to run the filter step fast: compiler options and a per-layer convolution plan.

Both are measured choices (docs/performance.md, ``scripts/benchmark.py``), made for float32 on CPU only;
on a GPU/TPU backend both are no-ops and XLA's own convolutions run.

* :func:`compiler_options`: jaxlib 0.10 sends convolutions and dots to YNNPACK by default; on our 2-core
  AVX2 machines Eigen's were about 1.3x faster over VGG16's 11 convolutions up to block5_conv1 (forward +
  input gradient, batch 16; ``scripts/conv_layers.py``), so jaxvis compiles its steps with YNNPACK off.
  ``JAXVIS_XLA_DEFAULTS=1`` keeps XLA's choice.
* :func:`conv_plan`: which VGG convolutions run as Winograd F(4x4, 3x3) or F(2x2, 3x3)
  (:mod:`jaxvis.models.winograd`) instead of directly. Winograd's smaller matmuls pay off when there are
  enough channels and enough tiles in a batch to keep the matmuls efficient.
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

CONV_MODES = ('auto', 'direct', 'winograd2', 'winograd4')
_CPU_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type', ''),)  # no YNNPACK fusions: Eigen convs and dots
# The 'auto' rule, from per-layer timings at batch 4, 16 and 32 (docs/performance.md):
_MIN_CHANNELS_IN = 128   # fewer input channels: the tile transforms cost more than the matmuls save
_MIN_ROWS = {4: 512, 2: 1024}  # matmul rows (batch x tiles) below which F(m) loses to a direct conv


def _backend(backend: str | None) -> str:
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
    if os.environ.get('JAXVIS_XLA_DEFAULTS', '') not in ('', '0') or _backend(backend) != 'cpu':
        return None
    return dict(_CPU_OPTIONS) if _cpu_options_work() else None


def conv_plan(layers, last_layer: str, size: int, batch: int, mode: str = 'auto',
              dtype: str = 'float32', backend: str | None = None) -> tuple[tuple[str, str], ...]:
    """``((conv layer, impl), ...)`` for the convolutions up to ``last_layer`` that leave 'direct'.

    layers: a ModelSpec's ``((name, kind, channels, stride), ...)`` of 3x3 'SAME' convs and 2x2 pools.
    size: input side in pixels; batch: images per compiled call on one device.
    mode: 'direct' (none), 'winograd2'/'winograd4' (every conv), or 'auto': on CPU in float32, F4 where
      ``batch * tiles >= 512``, else F2 where ``batch * tiles >= 1024``, for convs with at least 128
      input channels; on other backends or dtypes, none.
    """
    if mode not in CONV_MODES:
        raise ValueError(f'conv must be one of {CONV_MODES}, got {mode!r}')
    if mode == 'direct' or (mode == 'auto' and (dtype != 'float32' or _backend(backend) != 'cpu')):
        return ()
    plan, side, c_in = [], size, 3
    for name, kind, channels, _ in layers:
        if kind == 'pool':
            side //= 2
        elif mode != 'auto':
            plan.append((name, mode))
        else:
            impl = _auto(side, c_in, batch)
            if impl != 'direct':
                plan.append((name, impl))
        c_in = channels
        if name == last_layer:
            break
    return tuple(plan)


def _auto(side: int, c_in: int, batch: int) -> str:
    if c_in < _MIN_CHANNELS_IN:
        return 'direct'
    for m in (4, 2):
        if batch * (-(-side // m)) ** 2 >= _MIN_ROWS[m]:
            return f'winograd{m}'
    return 'direct'
