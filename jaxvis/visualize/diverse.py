"""Diverse images of one filter: ``n`` images optimized jointly with a diversity term over the group
(Olah et al., "Feature Visualization", Distill 2017, section "Diversity"), on the engine's step and loop.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import metrics, objectives
from jaxvis.errors import JaxvisError
from jaxvis.models import probe
from jaxvis.models.forward import forward, params_up_to
from jaxvis.models.protocol import Model, get_model
from jaxvis.util import check_float, check_int
from jaxvis.visualize.config import FilterConfig
from jaxvis.visualize.engine import as_config, parse_filters
from jaxvis.visualize.schedule import advance
from jaxvis.visualize.start import filter_keys, start_point, to_model_input
from jaxvis.visualize.step import make_step


class DiverseResult(NamedTuple):
    """What :func:`visualize_diverse` returns (numpy arrays).

    images:     [n, H, W, 3] float32 RGB 0..255, n images of one filter
    activation: [n] float32, each image's mean activation of the filter (no transforms)
    history:    [steps] float32, the total objective (filter + weight * diversity) before each update
    diversity:  float, :func:`jaxvis.metrics.gram_diversity` of the final images at ``diversity_layer``
    filter:     int;  config: the FilterConfig used;  weight: the diversity weight
    """

    images: np.ndarray
    activation: np.ndarray
    history: np.ndarray
    diversity: float
    filter: int
    config: FilterConfig
    weight: float


def visualize_diverse(params, layer: str, filter: int, config: FilterConfig | str = 'lucid', *, n: int = 4,
                      weight: float = 15.0, diversity_layer: str | None = None, model: str | Model = 'vgg16',
                      size: int = 128, key: jax.Array | None = None,
                      progress: Callable[[int], None] | None = None) -> DiverseResult:
    """``n`` different images that excite filter ``filter`` of ``layer``, optimized jointly.

    Maximizes ``objective(acts of the group) + weight * diversity(diversity_layer)`` (see
    :func:`jaxvis.objectives.diversity`, in ``[-(n - 1), 0]``), the objective being the config's (the
    filter's channel mean by default, averaged over the group). Image ``b`` starts from
    ``fold_in(filter_key, b)``, ``filter_key`` as in :func:`jaxvis.visualize.start.filter_keys`.

    The weight trades activation for diversity and depends on the layer's activation scale: Lucid uses
    100 on InceptionV1; on VGG16 block4_conv1 (128 px) 100 swamps the filter (its activation falls
    from 144 to 19), 5 to 15 keep it (docs/presets.md).

    Raises:
      JaxvisError: unknown layer/preset, filter out of range, ``n < 2``, or a config on model-input pixels.
    """
    model = get_model(model)
    cfg = as_config(config)
    n_channels = probe.channels(model, probe.check_layer(model, layer, params), params)
    probe.check_size(model, layer, size, params)
    parse_filters([filter], n_channels, layer)
    check_int('n', n, low=2)
    check_float('weight', weight)
    if cfg.param.space == 'input':
        raise JaxvisError('visualize_diverse needs a config with an image param (e.g. preset "lucid")')
    div_layer = probe.check_layer(model, diversity_layer or layer, params)
    names = probe.layer_names(model, params)
    deepest = max((layer, div_layer), key=names.index)
    p_model = params_up_to(model, params, deepest)
    group_step = _group_step(model, layer, div_layer, deepest, cfg, float(weight))

    key = jax.random.key(0) if key is None else key
    fkey = filter_keys(key, layer, np.asarray([filter]))[0]
    img_keys = jax.vmap(lambda b: jax.random.fold_in(fkey, b))(jnp.arange(n, dtype=jnp.uint32))
    p = jax.vmap(lambda k: start_point(cfg, k, size))(img_keys)

    def step(p, opt_state, f, keys, t, real):
        p, opt_state, loss = group_step(p_model, p, opt_state, f, keys, t)
        return p, opt_state, loss[None]

    p, history, _ = advance(step, (p, cfg.optimizer.init(p), jnp.int32(filter), img_keys), range(cfg.steps),
                            set(), lambda q: q, progress, n, end=None)
    rgb = jax.vmap(cfg.param.to_image)(p)
    acts = jax.jit(forward(model, deepest))(p_model, jax.vmap(to_model_input(model, cfg))(p))
    act = np.asarray(jnp.mean(acts[layer][..., filter], axis=(1, 2)), np.float32)
    return DiverseResult(images=np.asarray(255.0 * rgb, np.float32), activation=act,
                         history=history[:, 0].astype(np.float32),
                         diversity=float(metrics.gram_diversity(acts[div_layer])), filter=int(filter),
                         config=cfg, weight=float(weight))


@functools.lru_cache(maxsize=8)
def _group_step(model: Model, layer: str, div_layer: str, deepest: str, cfg: FilterConfig, weight: float):
    """The jitted group step, reused by every call with the same layers, config and weight (the filter is
    an argument), so the filters of a layer compile once."""
    total = objectives.as_objective(cfg.objective(layer)) + weight * objectives.diversity(div_layer)
    return jax.jit(make_step(model, deepest, cfg, total, group=True))
