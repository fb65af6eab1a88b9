"""Small pure image operations on channels-last arrays ``[..., H, W, C]``: blurs, rolls, the one
bilinear resampler (:func:`affine`, used by Lucid's scale/rotate transforms and by DeepDream's zoom),
resizing and the mirrored roll. Every function works under ``jit``.

No randomness here: random transforms live in :mod:`jaxvis.transforms` and take explicit keys.
"""
from __future__ import annotations

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


def affine(x: jax.Array, matrix: jax.Array, *, offset=None, mode: str = 'constant', cval: float = 0.0) -> jax.Array:
    """Resample ``x`` ``[H, W, C]`` bilinearly: output pixel ``p`` reads input ``c + offset + matrix @ (p - c)``.

    ``p`` and ``c`` (the centre) are ``(row, col)``; ``matrix`` is ``[2, 2]``, ``offset`` ``[2]`` pixels
    (None: 0). Borders: ``mode`` and ``cval`` as ``jax.scipy.ndimage.map_coordinates``. Same shape and
    dtype as ``x``.
    """
    h, w = x.shape[0], x.shape[1]
    c = jnp.asarray([(h - 1) / 2.0, (w - 1) / 2.0], jnp.float32)
    if offset is not None:
        c_src = c + jnp.asarray(offset, jnp.float32)
    else:
        c_src = c
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                                  indexing='ij'))
    src = c_src[:, None, None] + jnp.einsum('ij,jhw->ihw', jnp.asarray(matrix, jnp.float32), grid - c[:, None, None])
    sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [src[0], src[1]], order=1, mode=mode, cval=cval)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(x).astype(x.dtype)


def rotation_matrix(degrees) -> jax.Array:
    """``[2, 2]`` float32 for :func:`affine`: a counter-clockwise rotation on screen by ``degrees``."""
    a = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(a), jnp.sin(a)
    return jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])])


def zoom_rotate(image: jax.Array, *, zoom=1.0, degrees=0.0) -> jax.Array:
    """Zoom into the centre of ``[H, W, C]`` by ``zoom`` (>1 magnifies) and rotate it by ``degrees``
    (counter-clockwise on screen). Same shape; pixels from outside are mirrored in (no black corners)."""
    return affine(image, rotation_matrix(degrees) / jnp.asarray(zoom, jnp.float32), mode='reflect')


def resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Bilinear resize of ``[H, W, C]`` to ``[shape[0], shape[1], C]`` (antialiased when shrinking).

    Linear in ``image``, so ``resize(a) - resize(b) == resize(a - b)`` up to rounding.
    """
    h, w = shape
    if tuple(image.shape[:2]) == (h, w):
        return image
    return jax.image.resize(image, (h, w, image.shape[2]), method='linear', antialias=True)


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
