"""Image parameterizations: what the optimizer changes, and how that becomes an image.

A :class:`Param` is a pair of pure functions, as an optax transformation is:

* ``init(key, shape) -> params``: a start point for one image of ``shape = (H, W, C)``;
* ``to_image(params) -> [H, W, C] float32``: the image. Its ``space`` says what that image is:
  ``'rgb01'``, RGB in ``[0, 1]`` (:func:`image`; unbounded for the raw :func:`pixel` and :func:`fourier`),
  which the engine maps to the model's input; or ``'input'``, the model's input itself
  (:func:`pixels`, the seeds' parameterization: the pixels of the preprocessed image are optimized,
  and transforms and regularizers act on them).

``from_image`` is ``to_image``'s inverse (start from a given picture). Params are a pytree (an array, or a
:class:`Spectrum`), so optax, ``jit`` and ``vmap`` handle them; use ``jax.vmap(param.to_image)`` for a batch.

After Lucid (``lucid/optvis/param/{spatial,color,images}.py``; Mordvintsev et al., "Differentiable Image
Parameterizations", Distill 2018): :func:`fourier` scales a random spectrum by ``1 / frequency`` so that
every frequency moves about equally fast under gradient descent, :func:`decorrelated_to_rgb` lets the
optimizer work in decorrelated (ImageNet) colour space, and a sigmoid keeps values valid. :func:`maco`
(Fel et al. 2023, after Xplique's ``maco_image_parametrization``) optimizes only the phase of the
spectrum and keeps its magnitude fixed to that of natural photos (:mod:`jaxvis.spectrum`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import spectrum as S

# Lucid's ``color_correlation_svd_sqrt``: the square root of ImageNet's RGB colour correlation matrix.
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], np.float32)
# Lucid divides by the largest column norm, so a unit vector in decorrelated space stays within unit range.
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
FOURIER_MAGIC = 4.0  # Lucid's ``image_t / 4.0`` after the inverse FFT (its own "magic constant")


class Param(NamedTuple):
    """``init(key, (H, W, C)) -> params``; ``to_image(params) -> [H, W, C]``; ``from_image`` its inverse;
    ``space``: 'rgb01' or 'input' (see the module docstring); ``accumulate``, if set, is given each step
    the gradient of the objective with respect to the image (MACO's transparency), and its params then
    have an ``alpha`` field ``[H, W, C]``, which the engine returns."""

    init: Callable[[jax.Array, tuple[int, int, int]], Any]
    to_image: Callable[[Any], jax.Array]
    from_image: Callable[[jax.Array], Any]
    name: str
    space: str = 'rgb01'
    accumulate: Callable[[Any, jax.Array], Any] | None = None   # (params, d objective / d image) -> params


@flax.struct.dataclass
class Spectrum:
    """Fourier coefficients of one image: ``coeffs`` ``[H, W // 2 + 1, C, 2]`` float32 (real, imaginary)
    of ``numpy.fft.rfft2`` over (H, W); ``width`` is static (the column count alone cannot tell W = 2k
    from W = 2k + 1)."""

    coeffs: jax.Array
    width: int = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class Phase:
    """MACO's params: ``phase`` ``[H, W // 2 + 1, C]`` float32 of ``rfft2`` over (H, W); ``alpha``
    ``[H, W, C]`` float32, the accumulated ``|d objective / d image|`` (no gradient reaches it: the
    optimizer leaves it, and :func:`maco`'s ``accumulate`` adds to it); ``width`` static."""

    phase: jax.Array
    alpha: jax.Array
    width: int = flax.struct.field(pytree_node=False)


@functools.cache
def pixels(*, offset: float = 118.0, scale: float = 20.0, dist: str = 'uniform') -> Param:
    """The seeds' parameterization: the model-input pixels themselves, starting at
    ``offset + scale * U[0, 1)`` (``dist='normal'``: ``N(0, 1)``). Seed 003's ``(U - 0.5) * 20 + 128``
    is offset 118, scale 20; the deep-visualization-toolbox's mean image plus noise is 0, 1, 'normal'
    (0 in model-input space is the ImageNet mean). ``space='input'``."""
    def init(key, shape):
        noise = (jax.random.normal(key, tuple(shape), jnp.float32) if dist == 'normal'
                 else jax.random.uniform(key, tuple(shape), jnp.float32))
        return offset + scale * noise

    ident = lambda x: jnp.asarray(x, jnp.float32)
    return Param(init, ident, ident, f'pixels(offset={offset}, scale={scale}, dist={dist!r})', 'input')


@functools.cache
def pixel(*, sd: float = 0.01) -> Param:
    """Lucid's ``pixel_image``: the params are the (unbounded) image itself, ``init`` is ``N(0, sd^2)``."""
    return Param(init=lambda key, shape: sd * jax.random.normal(key, tuple(shape), jnp.float32),
                 to_image=lambda p: p,
                 from_image=lambda img: jnp.asarray(img, jnp.float32),
                 name=f'pixel(sd={sd})')


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """``[h, w // 2 + 1]`` radial frequency in cycles per pixel of each ``rfft2`` coefficient (0 .. 0.707)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """``[h, w // 2 + 1]`` float32: ``1 / max(f, 1 / max(h, w)) ** decay_power`` (Lucid's ``fft_image``).

    The floor gives the DC term the weight of the lowest non-zero frequency.
    """
    return (1.0 / np.maximum(rfft2d_freqs(h, w), 1.0 / max(h, w)) ** decay_power).astype(np.float32)


@functools.cache
def fourier(*, sd: float = 0.01, decay_power: float = 1.0) -> Param:
    """Lucid's ``fft_image``: the image is ``irfft2(scale * coeffs, norm='ortho') / 4``, unbounded.

    ``scale`` is :func:`spectrum_scale` (``1 / frequency``), ``coeffs`` start as ``N(0, sd^2)``. The
    orthonormal inverse FFT is Lucid's unnormalized ``irfft2d`` times its ``sqrt(w * h)``. Odd widths use
    numpy's ``rfft2`` layout (``W // 2 + 1`` columns) where Lucid keeps one more column and crops a pixel.
    """
    def init(key, shape):
        h, w, c = shape
        coeffs = sd * jax.random.normal(key, (h, w // 2 + 1, c, 2), jnp.float32)
        return Spectrum(coeffs=coeffs, width=int(w))

    def to_image(p: Spectrum):
        h, w = p.coeffs.shape[0], p.width
        scale = jnp.asarray(spectrum_scale(h, w, decay_power), jnp.complex64)[:, :, None]
        spec = scale * jax.lax.complex(p.coeffs[..., 0], p.coeffs[..., 1])
        return jnp.fft.irfft2(spec, s=(h, w), axes=(0, 1), norm='ortho').astype(jnp.float32) / FOURIER_MAGIC

    def from_image(img):
        img = jnp.asarray(img, jnp.float32)
        h, w = img.shape[0], img.shape[1]
        spec = jnp.fft.rfft2(img * FOURIER_MAGIC, axes=(0, 1), norm='ortho')
        spec = spec / jnp.asarray(spectrum_scale(h, w, decay_power), jnp.complex64)[:, :, None]
        return Spectrum(coeffs=jnp.stack([spec.real, spec.imag], -1).astype(jnp.float32), width=int(w))

    return Param(init, to_image, from_image, f'fourier(sd={sd}, decay_power={decay_power})')


def decorrelated_to_rgb(t: jax.Array) -> jax.Array:
    """``[..., 3]`` colours in Lucid's decorrelated space -> RGB (``t @ COLOR_MATRIX.T``)."""
    return jnp.einsum('...c,rc->...r', t, jnp.asarray(COLOR_MATRIX))


def rgb_to_decorrelated(rgb: jax.Array) -> jax.Array:
    """The inverse of :func:`decorrelated_to_rgb`."""
    return jnp.einsum('...c,rc->...r', rgb, jnp.asarray(np.linalg.inv(COLOR_MATRIX).astype(np.float32)))


def to_valid_rgb(t: jax.Array, *, decorrelate: bool = True, sigmoid: bool = True) -> jax.Array:
    """Lucid's ``to_valid_rgb``: ``[..., 3]`` unbounded -> ``[0, 1]`` RGB.

    Decorrelated colours are mapped to RGB first; then a sigmoid, or (``sigmoid=False``) a shift to the
    ImageNet colour mean (0.5 without decorrelation) and a clip whose gradient passes straight through.
    """
    if decorrelate:
        t = decorrelated_to_rgb(t)
    if sigmoid:
        return jax.nn.sigmoid(t)
    t = t + (jnp.asarray([0.48, 0.46, 0.41], jnp.float32) if decorrelate else 0.5)
    return t + jax.lax.stop_gradient(jnp.clip(t, 0.0, 1.0) - t)


def from_valid_rgb(rgb: jax.Array, *, decorrelate: bool = True, sigmoid: bool = True,
                   eps: float = 1e-4) -> jax.Array:
    """The inverse of :func:`to_valid_rgb` (values clipped to ``[eps, 1 - eps]`` first)."""
    rgb = jnp.clip(jnp.asarray(rgb, jnp.float32), eps, 1.0 - eps)
    t = jnp.log(rgb) - jnp.log1p(-rgb) if sigmoid else rgb - (jnp.asarray([0.48, 0.46, 0.41]) if decorrelate else 0.5)
    return rgb_to_decorrelated(t) if decorrelate else t


@functools.cache
def image(*, fft: bool = True, decorrelate: bool = True, sigmoid: bool = True, sd: float = 0.01,
          decay_power: float = 1.0) -> Param:
    """Lucid's ``param.image``: a Fourier (or pixel) image in decorrelated colour, squashed into ``[0, 1]``.

    ``to_image`` gives ``[H, W, 3]`` float32 RGB in ``[0, 1]`` (open interval with ``sigmoid``).
    Raises ValueError from ``init`` if ``C != 3`` and ``decorrelate``.
    """
    base = fourier(sd=sd, decay_power=decay_power) if fft else pixel(sd=sd)

    def init(key, shape):
        if decorrelate and shape[-1] != 3:
            raise ValueError(f'decorrelated colour needs 3 channels, got shape {tuple(shape)}')
        return base.init(key, shape)

    def to_image(p):
        return to_valid_rgb(base.to_image(p), decorrelate=decorrelate, sigmoid=sigmoid)

    def from_image(img):
        return base.from_image(from_valid_rgb(img, decorrelate=decorrelate, sigmoid=sigmoid))

    return Param(init, to_image, from_image,
                 f'image({base.name}, decorrelate={decorrelate}, sigmoid={sigmoid})')


def _standardize(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    return (x - jnp.mean(x)) / (jnp.std(x) + eps)


@functools.cache
def maco(*, sd: float = 1.0) -> Param:
    """MACO's image (Fel et al. 2023; Xplique's ``maco_image_parametrization``): only the phase changes.

    ``to_image``: the phase, standardized (mean 0, std 1 over all its entries), times the fixed magnitude
    ``spectrum.template(H, W)`` gives the spectrum; ``irfft2`` over (H, W); the image is standardized,
    taken from decorrelated colour to RGB and through a sigmoid: ``[H, W, 3]`` float32 in ``(0, 1)``.
    ``init``: phase ``N(0, sd^2)`` (Xplique: 1), alpha 0; each step ``alpha += |d objective / d image|``
    (Xplique's transparency). ``from_image`` keeps only the phase of the picture's
    spectrum (a projection, not an inverse: the magnitude is the template's). Raises ValueError from
    ``init`` if ``C != 3``.
    """
    def init(key, shape):
        h, w, c = shape
        if c != 3:
            raise ValueError(f'maco needs 3 channels, got shape {tuple(shape)}')
        return Phase(phase=sd * jax.random.normal(key, (h, w // 2 + 1, c), jnp.float32),
                     alpha=jnp.zeros((h, w, c), jnp.float32), width=int(w))

    def to_image(p: Phase):
        h, w = p.phase.shape[0], p.width
        ph = _standardize(p.phase)
        mag = jnp.asarray(S.template(h, w))
        img = jnp.fft.irfft2(jax.lax.complex(mag * jnp.cos(ph), mag * jnp.sin(ph)), s=(h, w), axes=(0, 1))
        return jax.nn.sigmoid(decorrelated_to_rgb(_standardize(img.astype(jnp.float32))))

    def from_image(img):
        t = from_valid_rgb(img)
        spec = jnp.fft.rfft2(t, axes=(0, 1))
        return Phase(phase=jnp.angle(spec).astype(jnp.float32), alpha=jnp.zeros(t.shape, jnp.float32),
                     width=int(img.shape[1]))

    def accumulate(p: Phase, g_image):
        return p.replace(alpha=p.alpha + jnp.abs(g_image))

    return Param(init, to_image, from_image, f'maco(sd={sd})', accumulate=accumulate)
