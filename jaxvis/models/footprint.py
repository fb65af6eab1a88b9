"""A lower bound of the memory one forward pass needs, from ``jax.eval_shape`` (no compute), so that a
size that cannot fit is refused before any work (:func:`check_fits`)."""
from __future__ import annotations

import math

from jaxvis.backend.memory import check_fits as _check_bytes
from jaxvis.errors import JaxvisError
from jaxvis.models import probe
from jaxvis.models.protocol import Model

_F32 = 4


def activation_bytes(model: Model, layer: str, shape: tuple[int, int], params=None) -> int:
    """Bytes of one ``[h, w, 3]`` float32 input and every activation up to ``layer``, for one image.

    A lower bound for a rectangle: the square of its shorter side, times how many such squares fit in
    it. 0 if the model does not run at that size (too small to matter).
    """
    side, long = min(shape), max(shape)
    try:
        shapes = probe.layer_shapes(model, params, side)
    except JaxvisError:
        return 0
    total = 3 * side * side
    for name, s in shapes.items():
        total += math.prod(s)
        if name == layer:
            break
    return total * _F32 * (long // side)


def check_fits(model: Model, layer: str, shape: tuple[int, int], params=None, *, batch: int = 1,
               what: str) -> None:
    """Raise JaxvisError (one line) if ``batch`` images of ``shape`` through ``layer`` cannot fit in memory."""
    _check_bytes(f'{what} ({shape[0]}x{shape[1]} through {layer})',
                 batch * activation_bytes(model, layer, shape, params))
