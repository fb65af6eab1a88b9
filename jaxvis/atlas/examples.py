"""Dataset examples: the crops of real photos that excite a filter most (OpenAI Microscope's "dataset
examples"), as pure functions: photos in, crops and scores out.

For each filter the units of the layer are ranked over every position of every photo; the top ``k``
are taken greedily, each one suppressing its neighbours within the receptive radius (so one blob is
not shown ``k`` times). A unit's crop is the square of side ``2 * radius + 1`` input pixels around the
unit's centre, clipped to the photo, resized to ``crop`` pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxvis import image_ops
from jaxvis.errors import JaxvisError
from jaxvis.models import probe
from jaxvis.models.forward import forward, params_up_to
from jaxvis.models.protocol import Model, get_model
from jaxvis.util import check_int


class Examples(NamedTuple):
    """crops:  [F, k, crop, crop, 3] float32 RGB 0..255 (the photos' own pixels, resized)
    scores: [F, k] float32, the unit's activation (NaN where fewer than k distinct units exist)
    where:  [F, k, 3] int, (photo, row, col) of the unit in the layer's grid (-1 where missing)
    filters: [F] int."""

    crops: np.ndarray
    scores: np.ndarray
    where: np.ndarray
    filters: np.ndarray


def activation_maps(params, layer: str, photos, *, model: str | Model = 'vgg16', batch_size: int = 4) -> np.ndarray:
    """``[P, S, S, 3]`` RGB 0..255 -> ``[P, h, w, C]`` float32: the layer's activations (a plain forward pass).

    Raises JaxvisError for an unknown layer or a layer without spatial axes.
    """
    model = get_model(model)
    probe.check_layer(model, layer, params)
    photos = np.asarray(photos, np.float32)
    if photos.ndim != 4 or photos.shape[-1] != 3:
        raise JaxvisError(f'photos must be [P, H, W, 3], got {list(photos.shape)}')
    p = params_up_to(model, params, layer)
    apply = forward(model, layer)
    fwd = jax.jit(lambda p, x: apply(p, model.preprocess(x))[layer])
    out = np.concatenate([np.asarray(fwd(p, photos[i:i + batch_size]), np.float32)
                          for i in range(0, len(photos), batch_size)])
    if out.ndim != 4:
        raise JaxvisError(f'{layer} has no spatial axes: dataset examples need a convolutional layer')
    return out


def top_units(maps: np.ndarray, k: int, suppress: int) -> tuple[np.ndarray, np.ndarray]:
    """``maps`` ``[P, h, w]`` -> ``(where [k, 3] int (photo, row, col), scores [k] float32)``: the ``k``
    largest units, greedily, each removing the units within ``suppress`` rows and columns of it in
    its photo. Missing ones (too few units) are ``-1`` and NaN. Ties go to the first in (photo, row, col)."""
    m = np.array(maps, np.float64)
    where, scores = np.full((k, 3), -1, np.int64), np.full((k,), np.nan, np.float32)
    for i in range(k):
        flat = int(np.argmax(m))
        if not np.isfinite(m.flat[flat]):
            break
        p, r, c = np.unravel_index(flat, m.shape)
        where[i], scores[i] = (p, r, c), m[p, r, c]
        m[p, max(0, r - suppress):r + suppress + 1, max(0, c - suppress):c + suppress + 1] = -np.inf
    return where, scores


def crop_box(row: int, col: int, grid: tuple[int, int], image: tuple[int, int], radius: int) -> tuple[int, ...]:
    """The input-pixel box ``(top, left, bottom, right)`` (exclusive ends) of the unit at ``(row, col)``
    of a ``grid`` (h, w) over an ``image`` (H, W): side ``min(2 * radius + 1, H, W)``, centred on the
    unit's centre and shifted inside the image where it would cross a border (so every box of a layer
    has one shape)."""
    side = min(2 * radius + 1, image[0], image[1])
    cy = int((row + 0.5) * image[0] / grid[0])
    cx = int((col + 0.5) * image[1] / grid[1])
    top = min(max(0, cy - radius), image[0] - side)
    left = min(max(0, cx - radius), image[1] - side)
    return (top, left, top + side, left + side)


def dataset_examples(params, layer: str, photos, filters, *, model: str | Model = 'vgg16', k: int = 4,
                     crop: int = 64, radius: int | None = None) -> Examples:
    """The ``k`` crops of ``photos`` (``[P, S, S, 3]`` RGB 0..255) that excite each of ``filters`` most.

    ``radius``: half the crop side in input pixels (default: the layer's receptive radius measured on one
    random input, :func:`jaxvis.models.probe.receptive_radius`); crops are at most the photo's size.
    Raises JaxvisError for bad ``k``/``crop`` or photos.
    """
    model = get_model(model)
    check_int('k', k, low=1)
    check_int('crop', crop, low=1)
    photos = np.asarray(photos, np.float32)
    maps = activation_maps(params, layer, photos, model=model)
    if radius is None:
        radius = probe.receptive_radius(model, layer, params, samples=1)
    check_int('radius', radius, low=0)
    grid = maps.shape[1:3]
    suppress = max(1, int(round(radius * grid[0] / photos.shape[1])) // 2)
    filters = np.asarray(filters, np.int64)
    scores = np.full((len(filters), k), np.nan, np.float32)
    where = np.full((len(filters), k, 3), -1, np.int64)
    side = min(2 * radius + 1, photos.shape[1], photos.shape[2])
    boxes = np.zeros((len(filters), k, side, side, 3), np.float32)  # missing units stay black
    for i, f in enumerate(filters):
        where[i], scores[i] = top_units(maps[..., f], k, suppress)
        for j, (p, r, c) in enumerate(where[i]):
            if p >= 0:
                t, l, b, rr = crop_box(r, c, grid, photos.shape[1:3], radius)
                boxes[i, j] = photos[p, t:b, l:rr]
    stack = boxes.reshape((-1, side, side, 3))
    crops = np.asarray(jax.jit(jax.vmap(lambda b: image_ops.resize(b, (crop, crop))))(stack))
    crops = crops.reshape(len(filters), k, crop, crop, 3)
    return Examples(crops=np.clip(crops, 0.0, 255.0), scores=scores, where=where, filters=filters)
