"""DeepDream's octaves: the sizes an image is dreamt at, and the detail put back at each upscale."""
from __future__ import annotations

import functools

import jax

from jaxvis.image_ops import resize
from jaxvis.models import probe
from jaxvis.models.protocol import Model


def octave_shapes(shape: tuple[int, int], octaves: int, scale: float) -> list[tuple[int, int]]:
    """Image sizes from the smallest octave to ``shape`` itself: ``shape / scale**i``, i = octaves-1 .. 0.

    >>> octave_shapes((300, 451), 3, 1.4)
    [(153, 230), (214, 322), (300, 451)]
    """
    h, w = shape
    return [(max(1, int(h / scale ** i)), max(1, int(w / scale ** i))) for i in range(octaves - 1, -1, -1)]


def plan_octaves(model: Model, deepest: str, shape: tuple[int, int], octaves: int, scale: float,
                 params=None) -> list[tuple[int, int]]:
    """The ``(h, w)`` sizes to dream at, smallest first, ending with ``shape``.

    Octaves whose shorter side leaves ``deepest`` no pixels are left out. Raises JaxvisError if
    ``shape`` itself is too small (naming the minimum).
    """
    probe.check_size(model, deepest, min(shape), params)
    fits = lambda s: (hw := probe.spatial(model, deepest, min(s), params)) is None or min(hw) >= 1
    return [s for s in octave_shapes(tuple(shape), int(octaves), scale) if fits(s)]


@functools.partial(jax.jit, static_argnums=(2, 3))
def upscale_with_detail(img, original, prev_shape, shape):
    """``img`` upscaled to ``shape`` plus what downscaling ``original`` to ``prev_shape`` lost
    (keras.io: ``original@shape - upscaled(original@previous shape)``)."""
    lost = resize(original, shape) - resize(resize(original, prev_shape), shape)
    return resize(img, shape) + lost
