"""Which 3x3 convolutions of a VGG-style network run as Winograd F(4x4, 3x3) or F(2x2, 3x3)
(:mod:`jaxvis.models.winograd`) instead of directly, on CPU in float32.

Winograd's smaller matmuls pay off when there are enough channels and enough tiles in a batch to keep
the matmuls efficient. The rule below was set from per-layer timings at batch 4, 16 and 32
(docs/performance.md); on other backends or dtypes every convolution is XLA's own.
"""
from __future__ import annotations

from jaxvis.backend.xla import backend_name
from jaxvis.util import ceil_div

CONV_MODES = ('auto', 'direct', 'winograd2', 'winograd4')
_MIN_CHANNELS_IN = 128   # fewer input channels: the tile transforms cost more than the matmuls save
_MIN_ROWS = {4: 512, 2: 1024}  # matmul rows (batch x tiles) below which F(m) loses to a direct conv


def conv_plan(convs, size: int, batch: int, mode: str = 'auto', dtype: str = 'float32',
              backend: str | None = None) -> tuple[tuple[str, str], ...]:
    """``((conv layer, impl), ...)`` for the convolutions that leave 'direct'.

    convs: ``((name, side, c_in), ...)``: each 3x3 'SAME' convolution with its input side in pixels
      for a ``size`` input and its input channels, in forward order.
    batch: images per compiled call on one device.
    mode: 'direct' (none), 'winograd2'/'winograd4' (every conv), or 'auto': on CPU in float32, F4 where
      ``batch * tiles >= 512``, else F2 where ``batch * tiles >= 1024``, for convs with at least 128
      input channels; on other backends or dtypes, none.
    """
    if mode not in CONV_MODES:
        raise ValueError(f'conv must be one of {CONV_MODES}, got {mode!r}')
    if mode == 'direct' or (mode == 'auto' and (dtype != 'float32' or backend_name(backend) != 'cpu')):
        return ()
    if mode != 'auto':
        return tuple((name, mode) for name, _, _ in convs)
    return tuple((name, impl) for name, side, c_in in convs
                 if (impl := _auto(side, c_in, batch)) != 'direct')


def _auto(side: int, c_in: int, batch: int) -> str:
    if c_in < _MIN_CHANNELS_IN:
        return 'direct'
    for m in (4, 2):
        if batch * ceil_div(side, m) ** 2 >= _MIN_ROWS[m]:
            return f'winograd{m}'
    return 'direct'
