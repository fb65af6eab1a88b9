"""Random image transforms ``(key, x) -> x`` applied before the forward pass (gradients flow back).

``x`` is ``[H, W, C]`` (one image); use ``jax.vmap`` for batches. Keys are explicit; no global RNG.
Factories are cached (same arguments, same function object), so configs holding them compare equal;
each transform's ``__name__`` describes it for manifests.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import image_ops
from jaxvis.errors import JaxvisError
from jaxvis.util import check_float, check_int

Transform = Callable[[jax.Array, jax.Array], jax.Array]


def _named(fn: Callable, name: str) -> Callable:
    fn.__name__ = fn.__qualname__ = name
    return fn


@functools.cache
def identity() -> Transform:
    return _named(lambda key, x: x, 'identity')


@functools.cache
def jitter(max_shift: int) -> Transform:
    """Roll the image by a uniform random ``(dy, dx)`` in ``[-max_shift, max_shift]`` (keras-vis Jitter).

    Only the forward pass sees the roll (the gradient flows back through it); the image itself is not
    moved. keras-vis 0.4.1's ``Jitter`` (vis/input_modifiers.py) shifts the image itself with
    wrap-around before each gradient and never shifts it back, so its picture ends up moved by the sum
    of the shifts (and its RMSProp cache does not move with it); otherwise the two are the same.
    """
    max_shift = check_int('jitter', max_shift, low=0, high=MAX_SHIFT)
    if max_shift == 0:
        return identity()

    def apply(key, x):
        d = jax.random.randint(key, (2,), -max_shift, max_shift + 1)
        return image_ops.roll2d(x, d[0], d[1])
    return _named(apply, f'jitter({max_shift})')


MAX_SHIFT = 4096  # pixels; a roll wraps around, so a shift beyond the image only repeats smaller ones


@functools.cache
def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` in order, each with its own key folded from ``key``."""
    def apply(key, x):
        for i, t in enumerate(transforms):
            x = t(jax.random.fold_in(key, i), x)
        return x
    return _named(apply, 'compose(' + ', '.join(getattr(t, '__name__', repr(t)) for t in transforms) + ')')


# ---------------------------------------------------------------- Lucid's transformation robustness
# (lucid/optvis/transform.py). Shapes stay static under jit: a transform's output shape depends only on
# its input shape. Scale and rotate resample bilinearly about the image centre ((H - 1) / 2, (W - 1) / 2).

MAX_SCALE = 16.0  # zoom factor of random_scale
LUCID_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))          # 0.90, 0.92, ..., 1.10
LUCID_ANGLES = tuple(float(a) for a in range(-10, 11)) + 5 * (0.0,)   # degrees; 0 drawn 6 times in 26


@functools.cache
def pad(width: int, *, mode: str = 'reflect', value: float = 0.5) -> Transform:
    """Pad ``width`` pixels on each side: ``[H, W, C] -> [H + 2w, W + 2w, C]`` (Lucid's ``pad``).

    ``mode`` as ``jnp.pad`` ('constant' fills ``value``; Lucid's standard transforms pad 0.5 gray).
    The key is unused. Raises JaxvisError for a width outside ``[0, MAX_SHIFT]``.
    """
    width = check_int('pad width', width, low=0, high=MAX_SHIFT)

    def apply(key, x):
        widths = [(width, width), (width, width)] + [(0, 0)] * (x.ndim - 2)
        if mode == 'constant':
            return jnp.pad(x, widths, mode='constant', constant_values=value)
        return jnp.pad(x, widths, mode=mode)
    return _named(apply, f'pad({width}, mode={mode!r}' + (f', value={value})' if mode == 'constant' else ')'))


@functools.cache
def crop_jitter(d: int) -> Transform:
    """Lucid's ``jitter(d)``: a random ``[H - d, W - d]`` crop (offsets uniform in ``0..d``, ``d`` in
    ``[0, MAX_SHIFT]``)."""
    d = check_int('crop jitter', d, low=0, high=MAX_SHIFT)
    if d == 0:
        return identity()

    def apply(key, x):
        off = jax.random.randint(key, (2,), 0, d + 1)
        size = (x.shape[0] - d, x.shape[1] - d) + tuple(x.shape[2:])
        return jax.lax.dynamic_slice(x, (off[0], off[1]) + (0,) * (x.ndim - 2), size)
    return _named(apply, f'crop_jitter({d})')


def scale(x: jax.Array, factor, *, mode: str = 'nearest', cval: float = 0.0) -> jax.Array:
    """Zoom ``x`` ``[H, W, C]`` by ``factor`` about its centre, keeping its shape (> 1 enlarges)."""
    return image_ops.affine(x, jnp.eye(2, dtype=jnp.float32) / factor, mode=mode, cval=cval)


def rotate(x: jax.Array, degrees, *, mode: str = 'constant', cval: float = 0.0) -> jax.Array:
    """Rotate ``x`` ``[H, W, C]`` counter-clockwise (as displayed, like ``np.rot90``) about its centre."""
    return image_ops.affine(x, image_ops.rotation_matrix(degrees), mode=mode, cval=cval)


@functools.cache
def random_scale(scales=LUCID_SCALES, *, mode: str = 'nearest', cval: float = 0.0) -> Transform:
    """Zoom by a factor drawn uniformly from ``scales`` (Lucid's ``random_scale``).

    Lucid resizes the image (its shape changes); here the content is zoomed inside the same frame, so a
    factor below 1 fills the border by ``mode`` ('nearest': repeat the edge, e.g. the gray padding).
    """
    scales = tuple(check_float('scale', s, low=0.0, high=MAX_SCALE, low_open=True) for s in scales)
    if not scales:
        raise JaxvisError('random_scale needs at least one scale')
    return _named(lambda key, x: scale(x, jax.random.choice(key, jnp.asarray(scales, jnp.float32)), mode=mode,
                                       cval=cval), f'random_scale({scales})')


@functools.cache
def random_rotate(angles=LUCID_ANGLES, *, mode: str = 'constant', cval: float = 0.0) -> Transform:
    """Rotate by an angle in degrees drawn uniformly from ``angles`` (Lucid's ``random_rotate``; the
    corners fill with ``cval``, 0 like ``tfa.image.rotate``)."""
    angles = tuple(check_float('angle', a, low=-360.0, high=360.0) for a in angles)
    if not angles:
        raise JaxvisError('random_rotate needs at least one angle')
    return _named(lambda key, x: rotate(x, jax.random.choice(key, jnp.asarray(angles, jnp.float32)), mode=mode,
                                        cval=cval), f'random_rotate({len(angles)} angles)')


@functools.cache
def standard_transforms() -> Transform:
    """Lucid's ``standard_transforms`` for ``[H, W, 3]`` images in ``[0, 1]``:
    pad 12 (0.5 gray), jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4.

    ``[H, W, C] -> [H + 12, W + 12, C]`` (pad 24, minus the crops of 8 and 4).
    """
    t = compose(pad(12, mode='constant', value=0.5), crop_jitter(8), random_scale(LUCID_SCALES),
                random_rotate(LUCID_ANGLES), crop_jitter(4))
    return _named(lambda key, x: t(key, x), 'standard_transforms')


def _corner_aligned(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` float32: linear interpolation with the end samples on the end samples
    (``align_corners=True``): output ``i`` reads input ``i * (n_in - 1) / (n_out - 1)``."""
    a = np.zeros((n_out, n_in), np.float32)
    src = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi, frac = np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)
    np.add.at(a, (np.arange(n_out), lo), 1 - frac)
    np.add.at(a, (np.arange(n_out), hi), frac)
    return a


@functools.cache
def fixed_size(side: int) -> Transform:
    """Resize to ``[side, side, C]`` bilinearly with the corners aligned: Lucent's ``fixed_image_size``
    (``torch.nn.Upsample(mode='bilinear', align_corners=True)``, appended after the transforms), so the
    network sees ``side`` px whatever the transforms hand it. Two small matrix products; the key is unused."""
    side = check_int('fixed size', side, low=1, high=MAX_SHIFT)

    def apply(key, x):
        if x.shape[0] == x.shape[1] == side:
            return x
        rows, cols = (jnp.asarray(_corner_aligned(side, n), x.dtype) for n in x.shape[:2])
        return jnp.einsum('ph,qw,hw...->pq...', rows, cols, x)
    return _named(apply, f'fixed_size({side})')


# ---------------------------------------------------------------- MACO's crops and noise
# (Xplique's maco_optimisation_step; Fel et al. 2023): several random square crops of the image, each
# resized back to the image's size, plus normal and uniform noise. The objective averages over them.

@functools.cache
def maco_crops(n: int = 4, *, box: float = 0.5, box_sd: float = 0.05, centre_sd: float = 0.15,
               noise: float = 0.04) -> Transform:
    """``[H, W, C] -> [n, H, W, C]``: ``n`` random square crops resized to ``H x W``, plus noise.

    As Xplique's ``maco``: each crop's centre is ``0.5 + N(0, centre_sd^2)`` (as a fraction of the
    image, per axis), its side ``clip(N(box, box_sd^2), 0.05, 1)`` of the image (Xplique's fixed-float
    ``box_size`` mode; its default decays 0.5 -> 0.05 over the steps); ``tf.image.crop_and_resize``'s
    bilinear sampling, zero outside the image. Then ``N(0, noise^2)`` and ``U(-noise/2, noise/2)`` noise
    per pixel. Xplique's ``noise_intensity`` 0.08 is on its (-1, 1) input range: 0.04 here, on [0, 1].
    """
    n = check_int('crops', n, low=1)
    box = check_float('box', box, low=0.05, high=1.0)
    check_float('noise', noise, low=0.0)

    def one(key, x):
        kc, kb, kn, ku = jax.random.split(key, 4)
        h, w = x.shape[0], x.shape[1]
        centre = 0.5 + centre_sd * jax.random.normal(kc, (2,), jnp.float32)
        side = jnp.clip(box + box_sd * jax.random.normal(kb, (), jnp.float32), 0.05, 1.0)
        offset = (centre - 0.5) * jnp.asarray([h - 1, w - 1], jnp.float32)
        crop = image_ops.affine(x, side * jnp.eye(2, dtype=jnp.float32), offset=offset, mode='constant', cval=0.0)
        crop = crop + noise * jax.random.normal(kn, crop.shape, crop.dtype)
        return crop + jax.random.uniform(ku, crop.shape, crop.dtype, -noise / 2.0, noise / 2.0)

    return _named(lambda key, x: jax.vmap(one, in_axes=(0, None))(jax.random.split(key, n), x),
                  f'maco_crops({n}, box={box}, noise={noise})')
