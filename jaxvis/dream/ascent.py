"""DeepDream: gradient ascent on a photo to amplify what whole layers respond to, over octaves.

The image is optimised in **RGB pixel space, float32 0..255**; the model's own ``preprocess`` is
applied inside the objective. Each step (``jit``-compiled once per octave shape, cached, so the frames
of a sequence reuse it):

1. roll the image by a random offset (``jax.random``; the key is split per octave and per step)
   over its mirror images (:func:`jaxvis.image_ops.mirror_roll`), so neither the image border nor
   a wrap-around seam is ever seen as an edge, and tile seams land somewhere else each step,
2. compute the objective's gradient, tile by tile (:mod:`jaxvis.dream.tiles`), roll it back,
3. normalise it by its mean absolute value and add ``step_size * 127.5`` times it: pixels move
   ``step_size`` of the half-range on average, as in keras.io's example, which ascends in [-1, 1]
   (Inception scaling) with ``step=0.01``; here too 0.01 (the default) is 1.275 grey levels a step,
4. optionally blur with a Gaussian of ``blur_sigma`` pixels, and clip to 0..255.

Octaves run from the smallest size up (:mod:`jaxvis.dream.octaves`); at each upscale the detail
that the downscale lost is put back. Octaves too small for the deepest layer are skipped, and
``history['octaves']`` says how many ran.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxvis.dream.config import DreamConfig
from jaxvis.dream.octaves import plan_octaves, upscale_with_detail
from jaxvis.dream.tiles import LayerTerm, plan_axis, tiled_value_and_grad
from jaxvis.errors import JaxvisError
from jaxvis.image_ops import gaussian_blur, mirror_roll, resize, zoom_rotate
from jaxvis.models import footprint, probe
from jaxvis.models.forward import forward, params_up_to
from jaxvis.models.protocol import Model, get_model
from jaxvis.util import check_float, check_int


class DreamResult(NamedTuple):
    """``image``: ``[H, W, 3]`` float32 RGB in 0..255.

    ``history``: ``{'objective': [[steps] float32 per octave], 'shapes': [(h, w) per octave],
    'octaves': octaves run, 'octaves_requested': octaves asked for}``; each objective value is that
    of the (rolled) image the step's gradient was taken at, i.e. before the step.
    """

    image: jax.Array
    history: dict[str, Any]


def layer_terms(model: Model, config: DreamConfig, params=None) -> tuple[LayerTerm, ...]:
    """The objective's terms in forward order, with each layer's stride; checks the layer names."""
    names = probe.layer_names(model, params)
    terms = [LayerTerm(t.layer, t.weight, t.fn, t.crop, probe.stride(model, probe.check_layer(model, t.layer, params),
                                                                      params))
             for t in config.objective.terms]
    return tuple(sorted(terms, key=lambda t: names.index(t.layer)))


def check_dream(model: Model, config: DreamConfig, shape: tuple[int, int], params=None) -> list[tuple[int, int]]:
    """Every check of :func:`deepdream` that needs no compute; returns the octave sizes.

    Raises JaxvisError: unknown layer, an image too small for the deepest layer, a tile smaller than
    that layer's stride, a tile (or untiled image) too big for the device's memory.
    """
    terms = layer_terms(model, config, params)
    stride = max(t.stride for t in terms)
    if config.tile_size is not None and config.tile_size < stride:
        raise JaxvisError(f"tile size {config.tile_size} is smaller than the deepest layer's stride ({stride})")
    shapes = plan_octaves(model, terms[-1].layer, shape, config.octaves, config.octave_scale, params)
    window = tuple(min(s, config.tile_size or s) for s in shapes[-1])
    footprint.check_fits(model, terms[-1].layer, window, params, what='a tile of the dream')
    return _cropped_fit(model, terms, shapes, params)


def _cropped_fit(model: Model, terms, shapes: list[tuple[int, int]], params) -> list[tuple[int, int]]:
    """The octaves at which every cropped term keeps some activations (smaller ones are left out)."""
    def fits(t, side):
        hw = probe.spatial(model, t.layer, side, params)
        return hw is None or hw[0] > 2 * t.crop

    cropped = [t for t in terms if t.crop]
    keep = [s for s in shapes if all(fits(t, side) for t in cropped for side in s)]
    if not keep or keep[-1] != shapes[-1]:
        t = next(t for t in cropped if not all(fits(t, side) for side in shapes[-1]))
        raise JaxvisError(f'image {shapes[-1][1]}x{shapes[-1][0]} too small for {t.layer} with a {t.crop}-activation '
                          f'border left out: it needs more than {2 * t.crop} activations per side; use a larger image')
    return keep


def deepdream(params, image, config: DreamConfig | None = None, *, key: jax.Array | None = None,
              model: str | Model = 'vgg16',
              on_octave: Callable[[int, tuple[int, int]], None] | None = None) -> DreamResult:
    """Dream on ``image``: amplify what the config's layers respond to.

    Args:
      params: the model's params (e.g. from :func:`jaxvis.load_keras_h5`), or None for a model that
        carries its own.
      image: ``[H, W, 3]`` RGB in 0..255 (any real dtype).
      config: :class:`~jaxvis.dream.config.DreamConfig` (default: VGG16's block4_conv3, 4 octaves).
      key: ``jax.random`` key for the rolls; ``None`` means ``jax.random.key(0)``.
      model: registry name or :class:`~jaxvis.models.Model`; only layers up to the deepest one run.
      on_octave: called as ``on_octave(index, (h, w))`` after each octave (for progress bars).

    Returns:
      :class:`DreamResult` with the image at the input's size.

    Raises:
      JaxvisError: unknown layer, a bad image shape, or an image or tile smaller than the deepest
        layer needs (the message gives the minimum).
    """
    model = get_model(model)
    config = config or DreamConfig()
    x = jnp.asarray(image, jnp.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise JaxvisError(f'image must be [H, W, 3] RGB, got shape {tuple(x.shape)}')
    terms = layer_terms(model, config, params)
    shapes = check_dream(model, config, x.shape[:2], params)
    key = jax.random.key(0) if key is None else key
    p = params_up_to(model, params, terms[-1].layer)
    img = resize(x, shapes[0])
    history = {'objective': [], 'shapes': shapes, 'octaves': len(shapes), 'octaves_requested': int(config.octaves)}
    for i, (shape, k) in enumerate(zip(shapes, jax.random.split(key, len(shapes)))):
        if i:
            img = upscale_with_detail(img, x, shapes[i - 1], shape)
        img, values = _ascend(p, img, k, model, terms, config)
        history['objective'].append(values)
        if on_octave is not None:
            jax.block_until_ready(img)  # so progress reports finished work, not dispatched work
            on_octave(i, shape)
    return DreamResult(img, history)


def dream_sequence(params, image, config: DreamConfig | None = None, *, frames: int, zoom: float = 1.05,
                   rotate: float = 0.0, key: jax.Array | None = None, model: str | Model = 'vgg16',
                   on_frame: Callable[[int, DreamResult], None] | None = None,
                   on_octave: Callable[[int, tuple[int, int]], None] | None = None) -> jax.Array:
    """Dream, zoom into the centre and rotate, dream again on the result, ``frames`` times.

    Frame 0 is the dream of ``image``; frame i dreams on frame i-1 zoomed by ``zoom`` and rotated
    by ``rotate`` degrees. ``key`` (``None``: ``jax.random.key(0)``) is split once per frame.
    ``on_frame(i, result)`` is called as each frame is done (progress, saving frames as they come);
    the compiled steps are shared by all frames.

    Returns ``[frames, H, W, 3]`` float32 RGB in 0..255.
    """
    check_sequence(frames=frames, zoom=zoom, rotate=rotate)
    key = jax.random.key(0) if key is None else key
    x = jnp.asarray(image, jnp.float32)
    out = []
    for i, k in enumerate(jax.random.split(key, frames)):
        if i:
            x = _zoom_rotate(x, jnp.float32(zoom), jnp.float32(rotate))
        result = deepdream(params, x, config, key=k, model=model, on_octave=on_octave)
        x = result.image
        out.append(x)
        if on_frame is not None:
            on_frame(i, result)
    return jnp.stack(out)


MAX_FRAMES = 100_000


def check_sequence(*, frames, zoom, rotate) -> None:
    """The checks of :func:`dream_sequence`'s options (JaxvisError, one line each)."""
    check_int('frames', frames, low=1, high=MAX_FRAMES)
    check_float('zoom', zoom, low=0.5, high=2.0)
    check_float('rotate', rotate, low=-180.0, high=180.0)


_zoom_rotate = jax.jit(lambda x, zoom, degrees: zoom_rotate(x, zoom=zoom, degrees=degrees))


def _ascend(params, image, key, model: Model, terms, config: DreamConfig):
    """``steps`` ascent steps at one octave: ``image [h, w, 3] -> (image, objective [steps])``.

    The loops over steps and tiles are Python loops around jitted calls (XLA on CPU runs convolutions
    inside ``scan``/``fori_loop`` 2-3x slower); each jitted piece is compiled once per shape and static
    configuration and reused by every later octave, dream and frame.
    """
    h, w = image.shape[:2]
    stride = max(t.stride for t in terms)
    tiles = (plan_axis(h, config.tile_size, config.tile_margin, stride),
             plan_axis(w, config.tile_size, config.tile_margin, stride))
    apply_fn = forward(model, terms[-1].layer)
    values = []
    for k in jax.random.split(key, config.steps):
        view, shift = _prepare(image, k, model)
        value, g_view = tiled_value_and_grad(apply_fn, params, view, terms=terms, tiles=tiles)
        image = _finish(image, g_view, shift, model, float(config.step_size), float(config.blur_sigma))
        values.append(value)
    return image, jnp.stack(values)


@functools.partial(jax.jit, static_argnums=(2,))
def _prepare(img, key, model):
    """Random mirror roll, then to model space. -> (view [h, w, 3], shift [2])."""
    h, w = img.shape[:2]
    ky, kx = jax.random.split(key)
    shift = jnp.stack([jax.random.randint(ky, (), 0, 2 * h), jax.random.randint(kx, (), 0, 2 * w)])
    return model.preprocess(mirror_roll(img, shift)), shift


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _finish(img, g_view, shift, model, step_size, blur_sigma):
    """Gradient back through the roll to RGB, normalised step, blur, clip."""
    _, back = jax.vjp(lambda x: model.preprocess(mirror_roll(x, shift)), img)
    g = back(g_view)[0]
    g = g / jnp.maximum(jnp.mean(jnp.abs(g)), 1e-8)
    img = img + (step_size * 127.5) * g
    if blur_sigma > 0:
        img = gaussian_blur(img, blur_sigma)
    return jnp.clip(img, 0.0, 255.0)
