"""Per-filter keys and start points.

Each filter's image is a function of (key, layer, filter index, config) alone: its key is
``fold_in(fold_in(key, crc32(layer)), filter)``, so it does not depend on which other filters share its
batch; its start is ``param.init(fold_in(filter_key, 0), (size, size, 3))``.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.errors import JaxvisError
from jaxvis.models.protocol import Model
from jaxvis.models.vgg import deprocess as caffe_deprocess
from jaxvis.models.vgg import preprocess as caffe_preprocess
from jaxvis.visualize.config import FilterConfig


def layer_id(layer: str) -> int:
    """A stable 31-bit id of a layer name (crc32), folded into keys."""
    return zlib.crc32(layer.encode()) & 0x7FFFFFFF


def filter_keys(key: jax.Array, layer: str, filters) -> jax.Array:
    """``[N]`` keys, one per filter: ``fold_in(fold_in(key, layer_id(layer)), f)``."""
    base = jax.random.fold_in(key, layer_id(layer))
    return jax.vmap(lambda f: jax.random.fold_in(base, f))(jnp.asarray(filters, jnp.uint32))


RANDOM_TAG = 0x72616E64  # 'rand': keeps the draw's keys apart from the filters' own


def draw_filters(key: jax.Array, layer: str, n_channels: int, k: int) -> np.ndarray:
    """``[k]`` distinct filter indices of ``layer`` in ``0..n_channels-1``, sorted, drawn uniformly with
    ``fold_in(fold_in(key, RANDOM_TAG), layer_id(layer))``: the same key and layer, the same filters.
    Raises JaxvisError unless ``1 <= k <= n_channels``."""
    if not 1 <= k <= n_channels:
        raise JaxvisError(f'cannot draw {k} distinct filters from {layer}, which has {n_channels} (1..{n_channels})')
    sub = jax.random.fold_in(jax.random.fold_in(key, RANDOM_TAG), layer_id(layer))
    return np.sort(np.asarray(jax.random.choice(sub, n_channels, (k,), replace=False))).astype(np.int64)


def start_point(cfg: FilterConfig, key: jax.Array, size: int) -> Any:
    """One start point (the param's pytree) from a filter's key."""
    return cfg.param.init(jax.random.fold_in(key, 0), (size, size, 3))


def pixel_maps(model: Model) -> tuple[Callable, Callable]:
    """``(to_input, from_input)`` between the seeds' pixels and the model's input.

    The seeds' recipes (their start noise, step sizes, decay toward 0, blur) are written for VGG's
    caffe input: BGR minus the ImageNet mean, one unit a grey level. A model with that preprocessing
    takes them as they are; any other model sees the same pixels through its own preprocessing
    (``model.preprocess(caffe_deprocess(q))``), so the recipes mean the same picture on every model.
    """
    if model.preprocess is caffe_preprocess:
        return (lambda q: q), (lambda x: x)
    return (lambda q: model.preprocess(caffe_deprocess(q))), (lambda x: caffe_preprocess(model.deprocess(x)))


def to_model_input(model: Model, cfg: FilterConfig) -> Callable:
    """``p -> [H, W, 3]`` model input, untransformed (the identity for the seeds' pixels on VGG)."""
    if cfg.param.space == 'input':
        to_input = pixel_maps(model)[0]
        return lambda p: to_input(cfg.param.to_image(p))
    return lambda p: model.preprocess(255.0 * cfg.param.to_image(p))


def from_model_input(model: Model, cfg: FilterConfig) -> Callable:
    """``[H, W, 3]`` model input -> ``p``: the inverse of :func:`to_model_input`, for given start images."""
    if cfg.param.space == 'input':
        from_input = pixel_maps(model)[1]
        return lambda x: cfg.param.from_image(from_input(x))
    return lambda x: cfg.param.from_image(model.deprocess(x) / 255.0)


def image_input(model: Model, cfg: FilterConfig) -> Callable:
    """``(image, key) -> [H', W', 3]`` (or ``[K, H', W', 3]`` views) model input after the config's
    transform, from ``param.to_image(p)`` (the seeds' pixels, or RGB in [0, 1])."""
    if cfg.param.space == 'input':
        to_input = pixel_maps(model)[0]
        return lambda img, key: to_input(cfg.transform(key, img))
    return lambda img, key: model.preprocess(255.0 * cfg.transform(key, img))


def transformed_input(model: Model, cfg: FilterConfig) -> Callable:
    """``(p, key) -> [H', W', 3]`` (or ``[K, H', W', 3]``) model input after the config's transform."""
    from_image = image_input(model, cfg)
    return lambda p, key: from_image(cfg.param.to_image(p), key)


def restart_point(cfg: FilterConfig, key: jax.Array, t, shape: tuple[int, int, int]) -> Any:
    """A dead filter's fresh start at step ``t``: ``param.init(fold_in(fold_in(key, 0), t + 1), shape)``
    (``key`` the filter's own; its first start used ``fold_in(key, 0)`` itself), or with a
    ``restart_param`` its picture from that key mapped into the config's param (``param.from_image``)."""
    k = jax.random.fold_in(jax.random.fold_in(key, 0), t + 1)
    if cfg.restart_param is None:
        return cfg.param.init(k, shape)
    r = cfg.restart_param
    return cfg.param.from_image(r.to_image(r.init(k, shape)))


def start_images(model: Model, init, n: int, size: int) -> np.ndarray | None:
    """``init`` (RGB 0..255, ``[H, W, 3]`` shared or ``[n, H, W, 3]``) as ``[n, size, size, 3]`` model input,
    or None for None. Raises JaxvisError for another shape."""
    if init is None:
        return None
    start = np.asarray(init, np.float32)
    if start.ndim == 3:
        start = np.broadcast_to(start, (n,) + start.shape)
    if start.shape != (n, size, size, 3):
        raise JaxvisError(f'init must be [{size}, {size}, 3] or [{n}, {size}, {size}, 3], got {list(np.shape(init))}')
    return np.asarray(model.preprocess(start))
