"""From optimized images to pictures: display normalization and grids (pure numpy, no files)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from jaxvis.util import ceil_div, check_int

EPS = 1e-7
MAX_MARGIN = 256  # pixels between grid tiles


def check_margin(margin) -> int:
    """Pixels between grid tiles: a whole number in ``[0, MAX_MARGIN]``."""
    return check_int('margin', margin, low=0, high=MAX_MARGIN)


def seed_normalize(image: np.ndarray) -> np.ndarray:
    """Seed 003's ``deprocess_image``: centre, scale to std 0.1, shift to 0.5, clip, to uint8.

    ``image``: [H, W, 3] float RGB (any range). Returns [H, W, 3] uint8. Unlike the seed, which
    normalized the network's BGR input and saved it as RGB (red and blue swapped), this is applied to
    the de-processed RGB image, so colours are right.
    """
    x = np.asarray(image, np.float64)
    x = (x - x.mean()) / (x.std() + EPS) * 0.1 + 0.5
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def centred_normalize(image: np.ndarray) -> np.ndarray:
    """keras-vis's ``deprocess_input`` (std 0.1 around 0.5, clipped) after removing each channel's mean.

    keras-vis normalizes the network's raw input, whose channels all start at the same mean; in RGB
    (VGG's caffe mean added back) the channels differ by about 20 grey levels, which would hide a
    low-contrast pattern behind a flat colour. ``image``: [H, W, 3] float. Returns [H, W, 3] uint8.
    """
    x = np.asarray(image, np.float64)
    return seed_normalize(x - x.reshape(-1, x.shape[-1]).mean(axis=0))


def percentile_normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Stretch the ``low``..``high`` percentiles of all values to 0..255 (keeps more contrast than the seed's)."""
    x = np.asarray(image, np.float64)
    lo, hi = np.percentile(x, [low, high])
    return (np.clip((x - lo) / max(hi - lo, EPS), 0, 1) * 255).astype(np.uint8)


def clip_normalize(image: np.ndarray) -> np.ndarray:
    """Round and clip to 0..255: the image as the network saw it (DeepDream's photos, Lucid's images)."""
    return np.clip(np.rint(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)


NORMALIZERS = {'seed': seed_normalize, 'centred': centred_normalize, 'percentile': percentile_normalize,
               'clip': clip_normalize}


def to_uint8(images: np.ndarray, method: str = 'seed') -> np.ndarray:
    """Normalize each image of ``images`` ``[N, H, W, 3]`` (or one ``[H, W, 3]``) separately -> uint8 of
    the same shape. ``method``: 'seed' (seed 003's mean/std), 'centred' (the same after removing each
    channel's mean: the keras-vis preset's), 'percentile', or 'clip' (round and clip)."""
    fn = NORMALIZERS[method]
    images = np.asarray(images)
    if images.ndim == 3:
        return fn(images)
    if not len(images):  # no images (e.g. a process of a multi-process run with no filters)
        return np.zeros(images.shape, np.uint8)
    return np.stack([fn(im) for im in images])


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of the squarest grid holding ``n`` tiles (cols >= rows)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, ceil_div(n, cols)), cols


def grid(tiles: Sequence[np.ndarray], *, margin: int = 5, cols: int | None = None,
         background: int = 0) -> np.ndarray:
    """Stitch ``tiles`` ([H, W, 3] uint8, same size) row by row into one image, as seed 003.

    ``cols`` defaults to the squarest grid (seed 003: 8 x 8 for 64). Margins of ``margin`` px between
    tiles, none outside. Returns [rows*H + (rows-1)*margin, cols*W + (cols-1)*margin, 3] uint8.
    """
    margin = check_margin(margin)
    tiles = [np.asarray(t, np.uint8) for t in tiles]
    if not tiles:
        raise ValueError('no tiles to put in a grid')
    h, w = tiles[0].shape[:2]
    rows, c = grid_shape(len(tiles))
    if cols is not None:
        c = cols
        rows = ceil_div(len(tiles), c)
    out = np.full((rows * h + (rows - 1) * margin, c * w + (c - 1) * margin, 3), background, np.uint8)
    for i, t in enumerate(tiles):
        r, k = divmod(i, c)
        out[r * (h + margin):r * (h + margin) + h, k * (w + margin):k * (w + margin) + w] = t
    return out


def maco_rgba(image: np.ndarray, alpha: np.ndarray, *, percentile_image: float = 1.0,
              percentile_alpha: float = 80.0) -> np.ndarray:
    """MACO's picture with its transparency (Horama's ``plot_maco``): ``[H, W, 3]`` float RGB (any range)
    and ``[H, W]`` accumulated gradient magnitude -> ``[H, W, 4]`` uint8 RGBA.

    The image is clipped to its ``percentile_image``..``100 - percentile_image`` percentiles and
    stretched to 0..255; the alpha is clipped at its ``percentile_alpha`` percentile and divided by its
    maximum (opaque where the objective's gradient was largest). An all-zero alpha gives opaque pixels.
    """
    rgb = percentile_normalize(image, percentile_image, 100.0 - percentile_image)
    a = np.asarray(alpha, np.float64)
    a = np.clip(a, 0.0, np.percentile(a, percentile_alpha))
    a = a / a.max() if a.max() > 0 else np.ones_like(a)
    return np.concatenate([rgb, (a * 255).round().astype(np.uint8)[..., None]], -1)
