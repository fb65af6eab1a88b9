"""Computing one chunk of an atlas (pure: arrays and measurements out, nothing written).

Each function depends only on its arguments (config, params, photos, key), so a chunk computed in a
resumed run equals the one an uninterrupted run computes.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from jaxvis import metrics
from jaxvis.atlas.examples import dataset_examples
from jaxvis.atlas.plan import Chunk
from jaxvis.errors import JaxvisError
from jaxvis.models.protocol import Model
from jaxvis.visualize import FilterConfig, visualize_diverse, visualize_filters


def filter_chunk(params, chunk: Chunk, cfg: FilterConfig, *, model: Model, size: int, key: jax.Array,
                 snapshot_every: int, drop_dead: bool, batch_size: int,
                 progress: Callable[[int], None] | None = None, width: int | None = None) -> dict[str, Any]:
    """The chunk's filter images and measures.

    Returns ``{'images': [F, S, S, 3] float32 RGB ~0..255, 'snapshots': [T, F, S, S, 3],
    'loss': [F], 'dead': [F] bool, 'rescued': [F] bool, 'selectivity': [F], 'activation': [F],
    'filters': [F] int}``; ``rescued``: the config's rescue revived the filter (all False without one).
    ``selectivity``/``activation``: :mod:`jaxvis.metrics` of the clipped final images. ``width``: as
    :func:`jaxvis.visualize_filters`.
    """
    res = visualize_filters(params, chunk.layer, list(chunk.filters), cfg, model=model, size=size, key=key,
                            batch_size=batch_size, snapshot_every=snapshot_every, drop_dead=drop_dead,
                            progress=progress, split_processes=False, width=width)  # one process's work
    means = metrics.channel_means(params, chunk.layer, np.clip(res.images, 0.0, 255.0), model=model)
    return {'images': res.images, 'snapshots': res.snapshots, 'loss': res.losses, 'dead': res.dead,
            'rescued': res.rescued_mask(), 'selectivity': np.asarray(metrics.selectivity(means, res.filters)),
            'activation': np.asarray(metrics.activation(means, res.filters)), 'filters': res.filters}


def diverse_chunk(params, chunk: Chunk, cfg: FilterConfig, *, model: Model, n: int, size: int, key: jax.Array,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``n`` diverse images of the chunk's one filter: ``{'images': [n, s, s, 3] float32 RGB 0..255,
    'activation': [n], 'diversity': float}`` (see :func:`jaxvis.visualize_diverse`)."""
    if len(chunk.filters) != 1:
        raise JaxvisError(f'a diverse chunk holds one filter, got {len(chunk.filters)}')
    res = visualize_diverse(params, chunk.layer, chunk.filters[0], cfg, n=n, model=model, size=size, key=key,
                            progress=progress)
    return {'images': res.images, 'activation': res.activation, 'diversity': res.diversity}


def examples_chunk(params, chunk: Chunk, photos: np.ndarray, *, model: Model, k: int, crop: int) -> dict[str, Any]:
    """Dataset examples of the chunk's filters: ``{'crops': [F, k, crop, crop, 3], 'scores': [F, k],
    'where': [F, k, 3]}`` (see :func:`jaxvis.atlas.examples.dataset_examples`)."""
    ex = dataset_examples(params, chunk.layer, photos, list(chunk.filters), model=model, k=k, crop=crop)
    return {'crops': ex.crops, 'scores': ex.scores, 'where': ex.where}
