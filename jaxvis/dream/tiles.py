"""The DeepDream objective and its gradient, computed tile by tile so memory stays bounded.

An image axis longer than ``tile_size`` is cut into ``n`` equal *cores* (a multiple of the deepest
layer's stride, the last one padded past the image); each tile's window adds ``margin`` pixels of
context on both sides. Every tile is run through the network alone (one jitted forward and backward
pass at a time, compiled once per tile shape), and only the activations over its core count, masked
to the activations the whole image has. So:

* the objective is a sum over tiles of per-tile sums, divided by the whole image's activation count;
* with ``margin`` at least the layer's receptive-field radius r
  (:func:`jaxvis.models.probe.receptive_radius`), the
  gradient equals the untiled one except within 2r of the image border: activations within r of it
  differ, because a tile sees zero padding of the *input* there instead of the network's per-layer
  zero padding (tested to 1e-5 on the tiny VGG);
* with ``margin=0`` (the Google notebook / TensorFlow tutorial scheme) the gradient also differs
  near tile seams; the random roll of the image every step moves the seams so they do not show.

An axis no longer than ``tile_size`` is not tiled at all and is exact. Memory: one tile's activations
(VGG16 to block4_conv3 at 512 x 512: a few hundred MB) plus a few copies of the image.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvis.backend import xla
from jaxvis.errors import JaxvisError
from jaxvis.objectives import term_values
from jaxvis.util import ceil_div


class LayerTerm(NamedTuple):
    """One term of the objective as the tiles need it: ``weight * mean(fn(a))`` over ``layer``'s
    activations ``a`` whose whole-image position is at least ``crop`` from the border; ``stride`` is
    the layer's input pixels per activation."""

    layer: str
    weight: float
    fn: str
    crop: int
    stride: int


class AxisTiles(NamedTuple):
    """Tiling of one image axis: ``n`` tiles owning ``core`` pixels each, ``margin`` context each side."""

    n: int
    core: int
    margin: int

    @property
    def window(self) -> int:
        return self.core + 2 * self.margin


def plan_axis(size: int, tile_size: int | None, margin: int, stride: int) -> AxisTiles:
    """How to cut an axis of ``size`` pixels; ``tile_size=None`` (or >= size) means one exact tile.

    Cores are balanced (``ceil(size / n)`` rounded up to ``stride``) so little padding is computed.
    Raises JaxvisError if ``tile_size`` is smaller than ``stride``.
    """
    if tile_size is None or size <= tile_size:
        return AxisTiles(1, size, 0)
    unit = (tile_size // stride) * stride
    if unit < stride:
        raise JaxvisError(f'tile size {tile_size} is smaller than the stride of the layer ({stride} pixels)')
    n = ceil_div(size, unit)
    core = ceil_div(ceil_div(size, n), stride) * stride
    return AxisTiles(n, core, ceil_div(max(0, margin), stride) * stride)


def pad_for_tiles(x: jax.Array, tiles: tuple[AxisTiles, AxisTiles]) -> jax.Array:
    """Zero-pad ``[H, W, C]`` so every tile window lies inside: ``[ty.n*ty.core + 2*ty.margin, ..., C]``."""
    h, w = x.shape[:2]
    ty, tx = tiles
    return jnp.pad(x, ((ty.margin, ty.n * ty.core - h + ty.margin),
                       (tx.margin, tx.n * tx.core - w + tx.margin), (0, 0)))


def crop_tiles(xp: jax.Array, tiles: tuple[AxisTiles, AxisTiles], shape: tuple[int, int]) -> jax.Array:
    """Inverse of :func:`pad_for_tiles`: the ``[H, W, C]`` image region of a padded array."""
    ty, tx = tiles
    return xp[ty.margin:ty.margin + shape[0], tx.margin:tx.margin + shape[1]]


def tile_value_and_grad(apply_fn: Callable, params, xp: jax.Array, iy, ix, h: int, w: int, *,
                        terms: Sequence[LayerTerm], tiles: tuple[AxisTiles, AxisTiles]) -> tuple[jax.Array, jax.Array]:
    """One tile's share of the objective and its gradient with respect to the tile's window.

    Args:
      apply_fn: ``(params, [1, h, w, 3]) -> {layer: [1, h', w', C]}`` (the model's forward pass).
      xp: the padded image (:func:`pad_for_tiles`) in the model's input space.
      iy, ix: the tile's row and column (int scalars, may be traced).
      h, w: the unpadded image size (Python ints).
      terms: the objective ``sum(weight * mean(fn(act)))``, each mean taken over the activations of the
        whole image (less ``crop`` at its borders), so the tiles' values add up to it.

    Returns ``(value, grad)``: float32 scalar and ``[window_h, window_w, C]`` at ``(iy*core_y, ix*core_x)``.
    """
    ty, tx = tiles
    at = (iy * ty.core, ix * tx.core, 0)
    win = lax.dynamic_slice(xp, at, (ty.window, tx.window, xp.shape[2]))

    def value(win):
        acts = apply_fn(params, win[None])
        total = jnp.zeros((), jnp.float32)
        for name, weight, fn, crop, s in terms:
            a = acts[name][0]
            a = a[ty.margin // s:(ty.margin + ty.core) // s, tx.margin // s:(tx.margin + tx.core) // s]
            gy = iy * (ty.core // s) + jnp.arange(a.shape[0])
            gx = ix * (tx.core // s) + jnp.arange(a.shape[1])
            if crop:
                mask = (((gy >= crop) & (gy < h // s - crop))[:, None]
                        & ((gx >= crop) & (gx < w // s - crop))[None, :])[..., None]
                count = (h // s - 2 * crop) * (w // s - 2 * crop) * a.shape[-1]
            else:
                mask = ((gy < h // s)[:, None] & (gx < w // s)[None, :])[..., None]
                count = (h // s) * (w // s) * a.shape[-1]
            total = total + weight * jnp.sum(jnp.where(mask, term_values(a, fn), 0.0)) / count
        return total

    return jax.value_and_grad(value)(win)


def add_tile(gp: jax.Array, g_tile: jax.Array, iy, ix, tiles: tuple[AxisTiles, AxisTiles]) -> jax.Array:
    """``gp`` with ``g_tile`` added at tile ``(iy, ix)``'s window (overlapping margins add up)."""
    ty, tx = tiles
    at = (iy * ty.core, ix * tx.core, 0)
    return lax.dynamic_update_slice(gp, lax.dynamic_slice(gp, at, g_tile.shape) + g_tile, at)


def tiled_value_and_grad(apply_fn: Callable, params, x: jax.Array, *, terms: Sequence[LayerTerm],
                         tiles: tuple[AxisTiles, AxisTiles]) -> tuple[jax.Array, jax.Array]:
    """Objective and gradient over ``x`` ``[H, W, 3]`` (model input space), one tile at a time.

    A Python loop over the tiles, each a jitted call compiled once per tile shape (``apply_fn`` must
    be the same function object from call to call for that cache to hit). Only one tile's activations
    exist at a time. (XLA on CPU runs the network 2-3x slower inside a ``fori_loop``/``scan``.)

    Returns ``(value, grad)``: float32 scalar and ``[H, W, 3]`` float32.
    """
    h, w = x.shape[:2]
    xp = _pad(x, tiles)
    gp = jnp.zeros_like(xp)
    total = jnp.zeros((), jnp.float32)
    for iy in range(tiles[0].n):
        for ix in range(tiles[1].n):
            gp, total = _tile_step()(apply_fn, params, xp, gp, jnp.int32(iy), jnp.int32(ix), total, h=h, w=w,
                                     terms=tuple(terms), tiles=tiles)
    return total, _crop(gp, tiles, (h, w))


_pad = jax.jit(pad_for_tiles, static_argnums=(1,))
_crop = jax.jit(crop_tiles, static_argnums=(1, 2))


@functools.cache
def _tile_step() -> Callable:
    """The jitted per-tile step, built on first use (so that importing jaxvis starts no JAX backend),
    with :func:`jaxvis.backend.xla.compiler_options` (Eigen convolutions on CPU)."""
    def step(apply_fn, params, xp, gp, iy, ix, total, *, h, w, terms, tiles):
        v, g = tile_value_and_grad(apply_fn, params, xp, iy, ix, h, w, terms=terms, tiles=tiles)
        return add_tile(gp, g, iy, ix, tiles), total + v

    return xla.jit(step, static_argnames=('apply_fn', 'h', 'w', 'terms', 'tiles'), donate_argnames=('gp',))
