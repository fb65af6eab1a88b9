"""Measures of feature-visualization quality: pure functions on arrays (plus params for a forward pass).

* :func:`activation` - how far the optimization got: the target filter's mean activation for the final
  image, re-scored without transforms (from :func:`channel_means`);
* :func:`selectivity` - that activation over the mean of the layer's *other* filters' mean activations
  (1: the image excites everything alike; large: it is specific to the filter);
* :func:`hf_share` - the share of the image's (mean-removed) spectral energy above half the Nyquist
  radius: near 0 for smooth images, 1 for a pixel checkerboard (high-frequency noise scores high);
* :func:`gram_diversity` / :func:`image_diversity` - how different the images of a batch are;
* :func:`dead_fraction` - the share of filters whose final objective is ``<= 0``.

:func:`measure` computes them all for a :class:`jaxvis.visualize.FilterResult`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.models import probe
from jaxvis.models.forward import forward, params_up_to
from jaxvis.models.protocol import Model, get_model
from jaxvis.objectives import gram_cosine


def hf_share(images, *, cutoff: float = 0.5) -> jax.Array:
    """``[..., H, W, C]`` -> ``[...]`` float32 in ``[0, 1]``: high-frequency share of the spectral energy.

    Per image, each channel's mean is removed, the image is multiplied by a 2-D (periodic) Hann window (so the jump
    between opposite edges of a non-periodic image does not count as detail), ``|fft2|^2`` is summed
    over channels, and the energy at radial frequencies ``sqrt(fy^2 + fx^2) > cutoff * 0.5`` cycles/pixel
    (``cutoff`` times the Nyquist frequency 0.5; corners reach 0.707) is divided by the total. A constant
    image gives 0 (no energy), a pixel checkerboard 1, white noise about 0.8 (the area outside the
    radius). Any value range (the ratio is scale-free).
    """
    x = jnp.asarray(images, jnp.float32)
    h, w = x.shape[-3], x.shape[-2]
    hann = lambda n: np.hanning(n + 1)[:-1]  # periodic Hann: its spectrum is 3 bins, so little leaks
    window = jnp.asarray(np.outer(hann(h), hann(w))[:, :, None], jnp.float32)
    x = (x - jnp.mean(x, axis=(-3, -2), keepdims=True)) * window
    power = jnp.sum(jnp.abs(jnp.fft.fft2(x, axes=(-3, -2))) ** 2, axis=-1)
    r = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    high = jnp.asarray(r > cutoff * 0.5)
    total = jnp.sum(power, axis=(-2, -1))
    return jnp.where(total > 0, jnp.sum(jnp.where(high, power, 0.0), axis=(-2, -1)) / jnp.maximum(total, 1e-30), 0.0)


def channel_means(params, layer: str, images, *, model: str | Model = 'vgg16', batch_size: int = 8) -> np.ndarray:
    """``[N, H, W, 3]`` RGB 0..255 -> ``[N, C]`` float32: each image's spatial mean of every filter of ``layer``.

    A plain forward pass (no transforms), ``batch_size`` images at a time. Raises JaxvisError for an
    unknown layer or missing params.
    """
    model = get_model(model)
    probe.check_layer(model, layer, params)
    p = params_up_to(model, params, layer)
    apply = forward(model, layer)

    def mean(a):
        return jnp.mean(a, axis=tuple(range(1, a.ndim - 1))) if a.ndim > 2 else a

    fwd = jax.jit(lambda p, x: mean(apply(p, model.preprocess(x))[layer]))
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(fwd(p, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)]).astype(np.float32)


def activation(means, filters) -> jax.Array:
    """``means`` ``[N, C]``, ``filters`` ``[N]`` int -> ``[N]``: ``means[i, filters[i]]``."""
    means = jnp.asarray(means, jnp.float32)
    return jnp.take_along_axis(means, jnp.asarray(filters)[:, None], axis=1)[:, 0]


def selectivity(means, filters, *, eps: float = 1e-6) -> jax.Array:
    """``[N]``: the target's mean activation over the mean magnitude of the other ``C - 1`` filters' means.

    ``means`` ``[N, C]`` (e.g. from :func:`channel_means`), ``filters`` ``[N]`` int. On a ReLU layer the
    means are ``>= 0`` and the magnitude is the mean itself; on a layer with signed outputs (a block's
    linear output, logits) it keeps the denominator a scale, where the plain mean of signed values can
    be about 0. The denominator is floored at ``eps`` (a layer silent but for the target gives
    ``target / eps``).
    """
    means = jnp.asarray(means, jnp.float32)
    target = activation(means, filters)
    others = (jnp.sum(jnp.abs(means), axis=1) - jnp.abs(target)) / (means.shape[1] - 1)
    return target / jnp.maximum(others, eps)


def _mean_offdiag(cos: jax.Array) -> jax.Array:
    b = cos.shape[0]
    return (jnp.sum(cos) - jnp.trace(cos)) / (b * (b - 1))


def gram_diversity(acts) -> jax.Array:
    """``[B, H, W, C]`` activations (B >= 2) -> ``[]``: mean pairwise cosine distance (``1 - cos``) of the
    images' Gram matrices (0: same style statistics; up to 1 for post-ReLU activations)."""
    return 1.0 - _mean_offdiag(gram_cosine(jnp.asarray(acts, jnp.float32)))


def image_diversity(images) -> jax.Array:
    """``[B, H, W, C]`` (B >= 2) -> ``[]``: mean pairwise cosine distance of the mean-removed images
    (0 for identical images, about 1 for independent noise)."""
    x = jnp.asarray(images, jnp.float32).reshape(len(images), -1)
    x = x - jnp.mean(x, axis=1, keepdims=True)
    x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=1, keepdims=True), 1e-30))
    return 1.0 - _mean_offdiag(x @ x.T)


def dead_fraction(losses) -> float:
    """Share of final objectives ``<= 0`` (a dead ReLU filter: no gradient reaches the image)."""
    return float(np.mean(np.asarray(losses) <= 0))


def measure(params, result, layer: str, *, model: str | Model = 'vgg16') -> dict[str, np.ndarray]:
    """All metrics of a :class:`~jaxvis.visualize.FilterResult` of ``layer``.

    Returns ``{'activation': [N], 'selectivity': [N], 'hf_share': [N], 'dead_fraction': float}`` (the
    share of ``result.dead``, which is :func:`dead_fraction` of the losses on a spatial ReLU layer)
    (images clipped to 0..255 before scoring, as they would be saved).
    """
    images = np.clip(result.images, 0.0, 255.0)
    means = channel_means(params, layer, images, model=model)
    return {'activation': np.asarray(activation(means, result.filters)),
            'selectivity': np.asarray(selectivity(means, result.filters)),
            'hf_share': np.asarray(hf_share(images)),
            'dead_fraction': float(np.mean(result.dead))}  # the result's own rule (logits: never moved)
