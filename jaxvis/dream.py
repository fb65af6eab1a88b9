"""DeepDream: gradient ascent on a photo to amplify what whole layers respond to, over octaves.

The image is optimised in **RGB pixel space, float32 0..255**; the model's own ``preprocess`` is
applied inside the objective. Each step (``jit``-compiled once per octave shape, cached, so the frames
of a sequence reuse it):

1. roll the image by a random offset (``jax.random``; the key is split per octave and per step)
   over its mirror images (:func:`jaxvis.dream_ops.mirror_roll`), so neither the image border nor
   a wrap-around seam is ever seen as an edge, and tile seams land somewhere else each step,
2. compute the objective's gradient, tile by tile (:mod:`jaxvis.dream_tiles`), roll it back,
3. normalise it by its mean absolute value and add ``step_size * 127.5`` times it: pixels move
   ``step_size`` of the half-range on average, as in keras.io's example, which ascends in [-1, 1]
   (Inception scaling) with ``step=0.01``; here too 0.01 (the default) is 1.275 grey levels a step,
4. optionally blur with a Gaussian of ``blur_sigma`` pixels, and clip to 0..255.

Octaves run from the smallest size up (sizes ``shape / octave_scale**i``); at each upscale the detail
that the downscale lost is put back (keras.io: ``original@shape - upscaled(original@previous shape)``).
Octaves too small for the deepest layer are skipped, and ``history['octaves']`` says how many ran.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from jaxvis.dream_ops import mirror_roll, octave_shapes, resize, zoom_rotate
from jaxvis.dream_tiles import OBJECTIVES, plan_axis, tiled_value_and_grad
from jaxvis.errors import JaxvisError
from jaxvis.image_ops import gaussian_blur
from jaxvis.models import ModelSpec, get_model

DEFAULT_LAYERS = {'block4_conv3': 1.0}


class DreamResult(NamedTuple):
    """``image``: ``[H, W, 3]`` float32 RGB in 0..255.

    ``history``: ``{'objective': [[steps] float32 per octave], 'shapes': [(h, w) per octave],
    'octaves': octaves run, 'octaves_requested': octaves asked for}``; each objective value is that
    of the (rolled) image the step's gradient was taken at, i.e. before the step.
    """

    image: jax.Array
    history: dict[str, Any]


def deepdream(params, image, *, layers: Mapping[str, float] | str | None = None, octaves: int = 4,
              octave_scale: float = 1.4, steps: int = 10, step_size: float = 0.01,
              key: jax.Array | None = None, model: str | ModelSpec = 'vgg16', tile_size: int | None = 512,
              tile_margin: int = 0, blur_sigma: float = 0.0, objective: str = 'mean_square',
              on_octave: Callable[[int, tuple[int, int]], None] | None = None) -> DreamResult:
    """Dream on ``image``: amplify what ``layers`` respond to.

    Args:
      params: the model's params pytree (e.g. from :func:`jaxvis.load_keras_h5`).
      image: ``[H, W, 3]`` RGB in 0..255 (any real dtype).
      layers: ``{layer: weight}`` (or one layer name); default ``{'block4_conv3': 1.0}``.
      octaves: number of scales; octave_scale: size ratio between them (> 1).
      steps: gradient-ascent steps per octave; step_size: mean change of a pixel per step, in units
        of 127.5 grey levels (keras.io's [-1, 1] scaling; 0.01 is 1.275 levels).
      key: ``jax.random`` key for the rolls; ``None`` means ``jax.random.key(0)``.
      model: registry name or :class:`ModelSpec`; only layers up to the deepest requested one run.
      tile_size: longest tile side in pixels (``None``: never tile); memory grows with its square.
      tile_margin: context pixels around each tile (see :mod:`jaxvis.dream_tiles`); 0 is fastest.
      blur_sigma: Gaussian blur (pixels) of the image after every step; 0 (default) turns it off.
        It compounds: 40 steps at 0.5 px blur the photo like one 3 px blur and wash it out.
      objective: 'mean_square' (default) or 'mean' of each layer's activations.
      on_octave: called as ``on_octave(index, (h, w))`` after each octave (for progress bars).

    Returns:
      :class:`DreamResult` with the image at the input's size.

    Raises:
      JaxvisError: unknown layer or objective, bad option, or an image smaller than the deepest
        layer's stride (the message gives the minimum size).
    """
    spec = get_model(model)
    layer_rows = _layer_rows(spec, layers)
    x = jnp.asarray(image, jnp.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise JaxvisError(f'image must be [H, W, 3] RGB, got shape {tuple(x.shape)}')
    _check_options(octaves=octaves, octave_scale=octave_scale, steps=steps, objective=objective,
                   tile_size=tile_size, stride=max(s for _, _, s in layer_rows))
    shapes = plan_octaves(x.shape[:2], octaves=octaves, octave_scale=octave_scale, model=spec, layers=layers)
    key = jax.random.key(0) if key is None else key
    config = dict(spec=spec, layer_rows=layer_rows, objective=objective, steps=int(steps),
                  step_size=float(step_size), blur_sigma=float(blur_sigma), tile_size=tile_size,
                  tile_margin=int(tile_margin))
    img = resize(x, shapes[0])
    history = {'objective': [], 'shapes': shapes, 'octaves': len(shapes), 'octaves_requested': int(octaves)}
    for i, (shape, k) in enumerate(zip(shapes, jax.random.split(key, len(shapes)))):
        if i:
            img = _upscale_with_detail(img, x, shapes[i - 1], shape)
        img, values = _ascend(params, img, k, **config)
        history['objective'].append(values)
        if on_octave is not None:
            jax.block_until_ready(img)  # so progress reports finished work, not dispatched work
            on_octave(i, shape)
    return DreamResult(img, history)


def plan_octaves(shape: tuple[int, int], *, octaves: int = 4, octave_scale: float = 1.4,
                 model: str | ModelSpec = 'vgg16', layers: Mapping[str, float] | str | None = None
                 ) -> list[tuple[int, int]]:
    """The ``(h, w)`` sizes :func:`deepdream` runs at, smallest first, ending with ``shape``.

    Octaves whose shorter side is smaller than the deepest layer's stride (so that layer would have
    no pixels) are left out. Raises JaxvisError if ``shape`` itself is too small (naming the minimum).
    """
    spec = get_model(model)
    deepest = _layer_rows(spec, layers)[-1][0]
    spec.check_size(deepest, min(shape))
    return [s for s in octave_shapes(tuple(shape), int(octaves), octave_scale)
            if spec.output_size(deepest, min(s)) >= 1]


def dream_sequence(params, image, *, frames: int, zoom: float = 1.05, rotate: float = 0.0,
                   key: jax.Array | None = None, on_frame: Callable[[int, DreamResult], None] | None = None,
                   **dream_kwargs) -> jax.Array:
    """Dream, zoom into the centre and rotate, dream again on the result, ``frames`` times.

    Frame 0 is the dream of ``image``; frame i dreams on frame i-1 zoomed by ``zoom`` and rotated
    by ``rotate`` degrees. ``key`` (``None``: ``jax.random.key(0)``) is split once per frame.
    ``on_frame(i, result)`` is called as each frame is done (progress, saving frames as they come).
    ``dream_kwargs`` go to :func:`deepdream`; the compiled steps are shared by all frames.

    Returns ``[frames, H, W, 3]`` float32 RGB in 0..255.
    """
    if int(frames) != frames or frames < 1:
        raise JaxvisError(f'frames must be a whole number >= 1, got {frames}')
    if not zoom > 0:
        raise JaxvisError(f'zoom must be > 0, got {zoom}')
    key = jax.random.key(0) if key is None else key
    x = jnp.asarray(image, jnp.float32)
    out = []
    for i, k in enumerate(jax.random.split(key, frames)):
        if i:
            x = _zoom_rotate(x, jnp.float32(zoom), jnp.float32(rotate))
        result = deepdream(params, x, key=k, **dream_kwargs)
        x = result.image
        out.append(x)
        if on_frame is not None:
            on_frame(i, result)
    return jnp.stack(out)


def _layer_rows(spec: ModelSpec, layers) -> tuple[tuple[str, float, int], ...]:
    """``(name, weight, stride)`` in forward order; validates names and weights."""
    if layers is None:
        layers = DEFAULT_LAYERS
    if isinstance(layers, str):
        layers = {layers: 1.0}
    if not layers:
        raise JaxvisError('no layer given to dream on')
    order = spec.layer_names
    rows = []
    for name, weight in layers.items():
        _, _, _, stride = spec.layer(name)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise JaxvisError(f'weight of layer {name!r} must be a number, got {weight!r}') from None
        if weight != weight or weight in (float('inf'), float('-inf')):
            raise JaxvisError(f'weight of layer {name!r} must be finite, got {weight}')
        rows.append((name, weight, stride))
    return tuple(sorted(rows, key=lambda r: order.index(r[0])))


def _check_options(*, octaves, octave_scale, steps, objective, tile_size, stride) -> None:
    if int(octaves) != octaves or octaves < 1:
        raise JaxvisError(f'octaves must be a whole number >= 1, got {octaves}')
    if not octave_scale >= 1.0:
        raise JaxvisError(f'octave scale must be >= 1, got {octave_scale}')
    if int(steps) != steps or steps < 1:
        raise JaxvisError(f'steps must be a whole number >= 1, got {steps}')
    if objective not in OBJECTIVES:
        raise JaxvisError(f'unknown objective {objective!r}; valid: {", ".join(OBJECTIVES)}')
    if tile_size is not None and tile_size < stride:
        raise JaxvisError(f'tile size {tile_size} is smaller than the deepest layer\'s stride ({stride})')


@functools.partial(jax.jit, static_argnums=(2, 3))
def _upscale_with_detail(img, original, prev_shape, shape):
    """``img`` upscaled to ``shape`` plus what downscaling ``original`` to ``prev_shape`` lost."""
    lost = resize(original, shape) - resize(resize(original, prev_shape), shape)
    return resize(img, shape) + lost


_zoom_rotate = jax.jit(lambda x, zoom, degrees: zoom_rotate(x, zoom=zoom, degrees=degrees))


@functools.lru_cache(maxsize=None)
def model_apply(spec: ModelSpec, last_layer: str) -> Callable:
    """``apply(params, x [N, H, W, 3]) -> {layer: [N, h, w, C]}`` up to ``last_layer``; one object per pair.

    Returning the same function object each time lets jitted code that takes it as a static
    argument (:func:`jaxvis.dream_tiles.tiled_value_and_grad`) reuse its compilations.
    """
    module = spec.make(last_layer)

    def apply(params, x):
        return module.apply({'params': params}, x)

    return apply


def _ascend(params, image, key, *, spec: ModelSpec, layer_rows, objective, steps, step_size, blur_sigma,
            tile_size, tile_margin):
    """``steps`` ascent steps at one octave: ``image [h, w, 3] -> (image, objective [steps])``.

    The loops over steps and tiles are Python loops around jitted calls (XLA on CPU runs convolutions
    inside ``scan``/``fori_loop`` 2-3x slower); each jitted piece is compiled once per shape and static
    configuration and reused by every later octave, dream and frame.
    """
    h, w = image.shape[:2]
    stride = max(s for _, _, s in layer_rows)
    tiles = (plan_axis(h, tile_size, tile_margin, stride), plan_axis(w, tile_size, tile_margin, stride))
    apply_fn = model_apply(spec, layer_rows[-1][0])
    values = []
    for k in jax.random.split(key, steps):
        view, shift = _prepare(image, k, spec)
        value, g_view = tiled_value_and_grad(apply_fn, params, view, layers=layer_rows, objective=objective,
                                             tiles=tiles)
        image = _finish(image, g_view, shift, spec, step_size, blur_sigma)
        values.append(value)
    return image, jnp.stack(values)


@functools.partial(jax.jit, static_argnums=(2,))
def _prepare(img, key, spec):
    """Random mirror roll, then to model space. -> (view [h, w, 3], shift [2])."""
    h, w = img.shape[:2]
    ky, kx = jax.random.split(key)
    shift = jnp.stack([jax.random.randint(ky, (), 0, 2 * h), jax.random.randint(kx, (), 0, 2 * w)])
    return spec.preprocess(mirror_roll(img, shift)), shift


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _finish(img, g_view, shift, spec, step_size, blur_sigma):
    """Gradient back through the roll to RGB, normalised step, blur, clip."""
    _, back = jax.vjp(lambda x: spec.preprocess(mirror_roll(x, shift)), img)
    g = back(g_view)[0]
    g = g / jnp.maximum(jnp.mean(jnp.abs(g)), 1e-8)
    img = img + (step_size * 127.5) * g
    if blur_sigma > 0:
        img = gaussian_blur(img, blur_sigma)
    return jnp.clip(img, 0.0, 255.0)
