"""Small pure image operations on channels-last arrays ``[..., H, W, C]``: blurs and rolls.

No randomness here: random transforms live in :mod:`jaxvis.transforms` and take explicit keys.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> np.ndarray:
    """Normalized 1-D Gaussian taps ``[2 * radius + 1]`` (sums to 1).

    ``radius`` defaults to ``int(4 * sigma + 0.5)``, as ``scipy.ndimage.gaussian_filter``.
    """
    if sigma <= 0:
        raise ValueError(f'sigma must be > 0, got {sigma}')
    radius = int(4 * sigma + 0.5) if radius is None else int(radius)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def box_kernel1d(size: int) -> np.ndarray:
    """``[size]`` equal taps summing to 1 (``cv2.blur`` with a size x size box is this, separably)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f'box size must be odd and >= 1, got {size}')
    return np.full((size,), 1.0 / size, np.float32)


def cv2_sigma(ksize: int) -> float:
    """The sigma OpenCV's ``GaussianBlur`` uses for a ``ksize`` kernel when sigma is 0."""
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def separable_filter(x: jax.Array, taps: np.ndarray, *, mode: str = 'symmetric') -> jax.Array:
    """Filter ``x`` ``[..., H, W, C]`` with the same 1-D ``taps`` along H then W, per channel.

    Borders: ``mode`` as ``jnp.pad`` ('symmetric' is scipy.ndimage's 'reflect'; 'reflect' is
    OpenCV's default BORDER_REFLECT_101). Output has the shape and dtype of ``x``.
    """
    taps = np.asarray(taps, np.float32)
    r = (len(taps) - 1) // 2
    if r == 0:
        return x * taps[0]
    pad = [(0, 0)] * (x.ndim - 3) + [(r, r), (r, r), (0, 0)]
    xp = jnp.pad(x, pad, mode=mode)
    h, w = x.shape[-3], x.shape[-2]
    rows = sum(float(t) * xp[..., i:i + h, :, :] for i, t in enumerate(taps))
    return sum(float(t) * rows[..., :, i:i + w, :] for i, t in enumerate(taps)).astype(x.dtype)


def gaussian_blur(x: jax.Array, sigma: float, *, radius: int | None = None, mode: str = 'symmetric') -> jax.Array:
    """Gaussian blur of ``x`` ``[..., H, W, C]`` with standard deviation ``sigma`` pixels."""
    return separable_filter(x, gaussian_kernel1d(sigma, radius), mode=mode)


def box_blur(x: jax.Array, size: int = 3, *, mode: str = 'reflect') -> jax.Array:
    """Mean over a ``size`` x ``size`` window (``cv2.blur``), borders reflected as OpenCV does."""
    return separable_filter(x, box_kernel1d(size), mode=mode)


def roll2d(x: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
    """Circularly shift ``x`` ``[..., H, W, C]`` by ``(dy, dx)`` pixels (traced shifts allowed)."""
    return jnp.roll(jnp.roll(x, dy, axis=-3), dx, axis=-2)


def percentile_mask(values: jax.Array, percentile: float) -> jax.Array:
    """True where ``values`` is below its own ``percentile`` (numpy's linear method), i.e. what to zero.

    With 0 < percentile and n distinct values, exactly ``ceil(percentile / 100 * (n - 1))`` are True.
    """
    return values < jnp.percentile(values, percentile)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b else 0


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of the squarest grid holding ``n`` tiles (cols >= rows)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, ceil_div(n, cols)), cols
