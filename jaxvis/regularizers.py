"""Image regularizers of the seeds and of Yosinski et al. 2015, composable like optax transforms.

A :class:`Regularizer` is a pure function ``apply(x, grad, step) -> x`` on one image, run after each
gradient step. ``x`` and ``grad`` are ``[H, W, 3]`` float32 in the model's input space (for VGG16:
BGR minus the ImageNet mean, so decaying toward 0 decays toward the mean image, as the paper does);
``step`` is the 0-based step index (an int array). Use :func:`chain` to apply several in order and
:func:`average` for seed 000's weighted mean of regularized images. Factories are cached and check
their arguments (one message for the library and the CLI).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxvis import image_ops
from jaxvis.util import check_float, check_int


class Regularizer(NamedTuple):
    """``apply(x [H,W,3], grad [H,W,3], step []) -> x [H,W,3]``; ``name`` describes it in manifests."""

    apply: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    name: str


MAX_SIGMA = 64.0  # pixels; a wider blur flattens any image we optimize


@functools.cache
def identity() -> Regularizer:
    return Regularizer(lambda x, g, step: x, 'identity')


@functools.cache
def decay(rate: float) -> Regularizer:
    """L2 decay: ``x * (1 - rate)`` (seed 000's ``x * 0.8`` is ``decay(0.2)``), ``rate`` in [0, 1)."""
    check_float('decay', rate, low=0.0, high=1.0, high_open=True)
    return Regularizer(lambda x, g, step: x * (1.0 - rate), f'decay({rate})')


def _every(k: int, fn: Callable[[jax.Array], jax.Array]) -> Callable:
    if k <= 1:
        return lambda x, g, step: fn(x)
    return lambda x, g, step: jnp.where(step % k == 0, fn(x), x)


def check_every(every) -> int:
    """How often a blur runs, in steps: a whole number >= 1."""
    return check_int('blur every', every, low=1)


@functools.cache
def gaussian_blur(sigma: float, every: int = 1, radius: int | None = None) -> Regularizer:
    """Gaussian blur of std ``sigma`` px on steps ``0, every, 2*every, ...`` (Yosinski's theta_b).

    Kernel radius ``int(4*sigma+0.5)`` by default and reflected borders, as scipy's gaussian_filter
    that the deep-visualization-toolbox uses.
    """
    check_float('blur sigma', sigma, low=0.0, high=MAX_SIGMA, low_open=True)
    check_every(every)
    return Regularizer(_every(every, lambda x: image_ops.gaussian_blur(x, sigma, radius=radius)),
                       f'gaussian_blur(sigma={sigma}, every={every}, radius={radius})')


@functools.cache
def box_blur(size: int = 3, every: int = 1) -> Regularizer:
    """Mean over a ``size`` x ``size`` window (seed 000's ``cv2.blur(img, (3, 3))``)."""
    check_int('box blur size', size, low=1, high=2 * MAX_SIGMA + 1)
    check_every(every)
    return Regularizer(_every(every, lambda x: image_ops.box_blur(x, size)), f'box_blur({size}, every={every})')


@functools.cache
def clip_small_norm(percentile: float) -> Regularizer:
    """Zero pixels whose L2 norm over channels is below the ``percentile`` of the image (theta_n_pct)."""
    check_float('norm percentile', percentile, low=0.0, high=100.0, high_open=True)
    def apply(x, g, step):
        mask = image_ops.percentile_mask(jnp.sqrt(jnp.sum(x * x, axis=-1)), percentile)
        return jnp.where(mask[..., None], 0.0, x)
    return Regularizer(apply, f'clip_small_norm({percentile})')


@functools.cache
def clip_small_contribution(percentile: float) -> Regularizer:
    """Zero pixels whose contribution ``|sum_c x_c * grad_c|`` is below the ``percentile`` (theta_c_pct).

    The contribution is the first-order change of the objective if the pixel were set to 0,
    as in the deep-visualization-toolbox's ``px_abs_benefit_percentile``.
    """
    check_float('contribution percentile', percentile, low=0.0, high=100.0, high_open=True)
    def apply(x, g, step):
        mask = image_ops.percentile_mask(jnp.abs(jnp.sum(x * g, axis=-1)), percentile)
        return jnp.where(mask[..., None], 0.0, x)
    return Regularizer(apply, f'clip_small_contribution({percentile})')


@functools.cache
def clip_small_value(percentile: float) -> Regularizer:
    """Zero values whose absolute value is below the ``percentile`` of all values (seed 000's clip)."""
    check_float('value percentile', percentile, low=0.0, high=100.0, high_open=True)
    def apply(x, g, step):
        return jnp.where(image_ops.percentile_mask(jnp.abs(x), percentile), 0.0, x)
    return Regularizer(apply, f'clip_small_value({percentile})')


@functools.cache
def chain(*regs: Regularizer) -> Regularizer:
    """Apply ``regs`` one after another (left to right); identities are left out, so ``chain()`` is
    :func:`identity` and ``chain(r)`` is ``r``."""
    kept = tuple(r for r in regs if r is not identity())
    if kept != regs or len(kept) <= 1:
        return kept[0] if len(kept) == 1 else identity() if not kept else chain(*kept)
    def apply(x, g, step):
        for r in regs:
            x = r.apply(x, g, step)
        return x
    return Regularizer(apply, 'chain(' + ', '.join(r.name for r in regs) + ')')


@functools.cache
def average(*weighted: tuple[float, Regularizer]) -> Regularizer:
    """Weighted mean of the images each regularizer makes from the same ``x`` (weights normalized).

    Seed 000 combines ``(3, box_blur(3)), (3, decay(0.2)), (1, clip_small_value(1))`` this way.
    """
    total = float(sum(w for w, _ in weighted))
    def apply(x, g, step):
        return sum((w / total) * r.apply(x, g, step) for w, r in weighted)
    return Regularizer(apply, 'average(' + ', '.join(f'{w}*{r.name}' for w, r in weighted) + ')')
