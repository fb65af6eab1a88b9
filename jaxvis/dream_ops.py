"""Key-free image operations used by DeepDream: resize, mirror roll, zoom/rotate, octave sizes.

(The Gaussian blur is :func:`jaxvis.image_ops.gaussian_blur`.)

Images are ``[H, W, C]`` float32, channels last. Every function here is pure and works under ``jit``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Bilinear resize of ``[H, W, C]`` to ``[shape[0], shape[1], C]`` (antialiased when shrinking).

    Linear in ``image``, so ``resize(a) - resize(b) == resize(a - b)`` up to rounding.
    """
    h, w = shape
    if tuple(image.shape[:2]) == (h, w):
        return image
    return jax.image.resize(image, (h, w, image.shape[2]), method='linear', antialias=True)


def zoom_rotate(image: jax.Array, *, zoom: float | jax.Array = 1.0,
                degrees: float | jax.Array = 0.0) -> jax.Array:
    """Zoom into the centre of ``[H, W, C]`` by ``zoom`` (>1 magnifies) and rotate it by ``degrees``.

    Counter-clockwise on screen for positive ``degrees``. Same shape out; bilinear sampling; pixels
    that come from outside the image are mirrored in (``reflect``), so no black corners appear.
    """
    h, w = image.shape[:2]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - cy, jnp.arange(w, dtype=jnp.float32) - cx,
                          indexing='ij')
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    inv = 1.0 / jnp.asarray(zoom, jnp.float32)
    # Inverse map: output pixel -> input pixel (rotate back by theta, shrink by zoom).
    src_y = (cos * yy + sin * xx) * inv + cy
    src_x = (-sin * yy + cos * xx) * inv + cx
    channels = [jax.scipy.ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1, mode='reflect')
                for c in range(image.shape[2])]
    return jnp.stack(channels, axis=-1)


def mirror_roll(image: jax.Array, shift: jax.Array) -> jax.Array:
    """``jnp.roll`` of ``[H, W, C]`` by ``shift = (dy, dx)`` over the image mirrored at its borders.

    The image is seen as one period of ``[x, flip(x)]`` (period 2H by 2W), so the result has no
    wrap-around seam: where ``jnp.roll`` would put the bottom edge next to the top edge, this puts a
    mirror fold. ``shift`` may be traced; each ``dy`` in ``[0, 2H)`` gives a distinct view.
    """
    h, w = image.shape[:2]
    return image[_mirror_index(h, shift[0])][:, _mirror_index(w, shift[1])]


def _mirror_index(n: int, shift: jax.Array) -> jax.Array:
    k = (jnp.arange(n) - shift) % (2 * n)
    return jnp.where(k < n, k, 2 * n - 1 - k)


def octave_shapes(shape: tuple[int, int], octaves: int, scale: float) -> list[tuple[int, int]]:
    """Image sizes from the smallest octave to ``shape`` itself: ``shape / scale**i``, i = octaves-1 .. 0.

    >>> octave_shapes((300, 451), 3, 1.4)
    [(153, 230), (214, 322), (300, 451)]
    """
    h, w = shape
    return [(max(1, int(h / scale ** i)), max(1, int(w / scale ** i))) for i in range(octaves - 1, -1, -1)]
