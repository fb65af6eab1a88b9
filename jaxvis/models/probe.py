"""What jaxvis learns about a model from its ``features`` alone, with ``jax.eval_shape`` (no compute):
the layers in forward order, their channels and spatial sizes, the smallest input a layer needs and its
stride; and, by one measured gradient, a layer's receptive-field radius. Results are cached on the model.

Shapes are per image: ``(H, W, C)`` for a spatial layer, ``(C,)`` for one without spatial axes.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.errors import JaxvisError
from jaxvis.models.forward import forward, params_up_to
from jaxvis.models.protocol import Model

_MAX_SIZE = 4096  # the largest input side probed for "how small may the input be"


def abstract_params(model: Model, params=None):
    """The shapes of the model's params as ``ShapeDtypeStruct``s: those ``model.init`` gives (the
    architecture's own: ``params`` may then hold only the layers a caller needs), else ``params``'
    or the model's own."""
    if model.init is not None:
        key = ('init_shapes',)
        if key not in model.cache:
            model.cache[key] = jax.eval_shape(model.init, jax.random.key(0))
        return model.cache[key]
    if params is None:
        params = model.params
    if params is None:
        raise JaxvisError(f'model {model.name!r} has no params to derive its layers from: pass them')
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.asarray(a).dtype)
                                  if not isinstance(a, jax.ShapeDtypeStruct) else a, params)


def _signature(abstract) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(abstract)
    return tree, tuple((a.shape, str(a.dtype)) for a in leaves)


def _shapes(model: Model, size: int, abstract, upto: str | None) -> dict[str, tuple] | None:
    """``{layer: shape}`` for a ``size`` x ``size`` input, or None if the model cannot run at that size."""
    key = ('shapes', size, upto, _signature(abstract))
    if key not in model.cache:
        x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
        order = []  # the dict's own order (forward order): JAX's pytrees would sort its keys

        def run(p, x):
            out = model.features(p, x, upto)
            order.extend(out)
            return out
        try:
            out = jax.eval_shape(run, abstract, x)
            shapes = {name: tuple(out[name].shape[1:]) for name in order}
        except (TypeError, ValueError, ZeroDivisionError):  # negative or empty sizes deep in the net
            shapes = None
        model.cache[key] = shapes
    return model.cache[key]


def layer_shapes(model: Model, params=None, size: int | None = None) -> dict[str, tuple]:
    """``{layer: per-image shape}`` in forward order at ``size`` (default: the model's probe size).

    Raises JaxvisError if the model does not run at that size.
    """
    size = model.probe_size if size is None else size
    shapes = _shapes(model, size, abstract_params(model, params), None)
    if shapes is None:
        raise JaxvisError(f'model {model.name!r} does not run on a {size}x{size} input')
    return shapes


def layer_names(model: Model, params=None) -> tuple[str, ...]:
    return tuple(layer_shapes(model, params))


def conv_layers(model: Model, params=None) -> tuple[str, ...]:
    """The layers ``--layer all`` covers: those of kind 'conv' (every layer if the model names no kinds)."""
    names = layer_names(model, params)
    return names if model.kinds is None else tuple(n for n in names if model.kinds.get(n) == 'conv')


def check_layer(model: Model, layer: str, params=None) -> str:
    """``layer`` if the model has it; else JaxvisError listing the valid layers."""
    names = layer_names(model, params)
    if layer not in names:
        raise JaxvisError(f'unknown layer {layer!r} for {model.name}; valid layers: {", ".join(names)}')
    return layer


def channels(model: Model, layer: str, params=None) -> int:
    """The layer's channel (filter, unit) count."""
    check_layer(model, layer, params)
    return int(layer_shapes(model, params)[layer][-1])


def spatial(model: Model, layer: str, size: int, params=None) -> tuple[int, int] | None:
    """``(H, W)`` of ``layer`` for a ``size`` x ``size`` input; ``(0, 0)`` if the input is too small for
    it; None for a layer without spatial axes."""
    abstract = abstract_params(model, params)
    shapes = _shapes(model, size, abstract, None)
    if shapes is None or layer not in shapes:
        shapes = _shapes(model, size, abstract, layer)  # the net may fail deeper than this layer
    if shapes is None or layer not in shapes:
        return (0, 0)
    shape = shapes[layer]
    return None if len(shape) == 1 else (int(shape[0]), int(shape[1]))


def min_size(model: Model, layer: str, params=None) -> int:
    """The smallest input side at which ``layer`` has at least one position (1 for a layer that
    always has, e.g. after a global pool, if the net runs at all)."""
    key = ('min_size', layer, _signature(abstract_params(model, params)))
    if key not in model.cache:
        ok = lambda s: (hw := spatial(model, layer, s, params)) is None or min(hw) >= 1
        lo, hi = 1, model.probe_size
        while not ok(hi):
            if hi >= _MAX_SIZE:
                raise JaxvisError(f'{model.name} cannot compute {layer} on inputs up to {_MAX_SIZE} pixels')
            lo, hi = hi, hi * 2
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
        model.cache[key] = hi
    return model.cache[key]


def check_size(model: Model, layer: str, size: int, params=None) -> None:
    """Raise JaxvisError if a ``size`` x ``size`` input leaves ``layer`` with no spatial extent."""
    hw = spatial(model, layer, size, params)
    if hw is not None and min(hw) < 1:
        raise JaxvisError(f'size {size} is too small for {layer}: it needs an input of at least '
                          f'{min_size(model, layer, params)} pixels')


def stride(model: Model, layer: str, params=None) -> int:
    """Input pixels per activation of ``layer`` (VGG16's block4_conv3: 8); 1 for a non-spatial layer."""
    size = 1024
    hw = spatial(model, layer, size, params)
    if hw is None or min(hw) < 1:
        return 1
    return max(1, round(size / hw[0]))


def receptive_radius(model: Model, layer: str, params, *, samples: int = 4) -> int:
    """Half the receptive field of one unit of ``layer``, in input pixels, measured: the support of the
    gradient of the centre unit (all channels) with respect to the input, over ``samples`` random
    inputs, grown until it no longer touches the border. ``ceil((field - 1) / 2)``.

    ``params``: real or random params (a dead path can only shrink the support it measures).
    """
    key = ('radius', layer, samples)
    if key in model.cache:
        return model.cache[key]
    fwd = forward(model, layer)
    size = max(64, 8 * stride(model, layer, params))

    def centre(x, p):
        a = fwd(p, x[None])[layer][0]
        return jnp.sum(a[a.shape[0] // 2, a.shape[1] // 2])

    grad = jax.jit(jax.vmap(jax.grad(centre), in_axes=(0, None)))  # params an argument: not folded as constants
    p = params_up_to(model, params, layer)
    while True:
        rgb = jax.random.uniform(jax.random.key(0), (samples, size, size, 3), jnp.float32, 0.0, 255.0)
        g = grad(model.preprocess(rgb), p)
        support = np.asarray(jnp.any(g != 0, axis=(0, 3)))
        rows, cols = np.flatnonzero(support.any(1)), np.flatnonzero(support.any(0))
        if not len(rows):
            raise JaxvisError(f'{layer} of {model.name}: no input pixel reaches its centre unit')
        touches = rows[0] == 0 or cols[0] == 0 or rows[-1] == size - 1 or cols[-1] == size - 1
        if not touches or size >= _MAX_SIZE:
            break
        size *= 2
    field = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    model.cache[key] = int(math.ceil((field - 1) / 2))
    return model.cache[key]
