"""DeepDream on the tiny random VGG: the objective goes up, sizes, keys, tiles, octaves, sequences.

Compilation dominates the time here, so the tests share a few image shapes and configurations
(jit caches them across tests).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import objectives as O
from jaxvis.dream import DreamConfig, DreamResult, dream_sequence, octave_shapes, plan_octaves
from jaxvis.dream import ascent
from jaxvis.dream.octaves import upscale_with_detail
from jaxvis.dream.tiles import AxisTiles, LayerTerm, _tile_step, plan_axis, tiled_value_and_grad
from jaxvis.errors import JaxvisError
from jaxvis.image_ops import mirror_roll, resize, zoom_rotate
from jaxvis.models import forward, get_model, probe

TINY = get_model('tiny')
LAYER = 'block3_conv3'          # stride 4, receptive field 40 px
BASE = dict(model='tiny', layers=LAYER, octaves=2, steps=12)


def deepdream(params, image, *, key=None, model='tiny', **options):
    """The library call with the config built from ``layers=``, ``objective=`` and DreamConfig fields."""
    return ascent.deepdream(params, image, DreamConfig.make(**options), key=key, model=model)


def model_apply(model, layer):
    return forward(model, layer)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random 'photo' ``[h, w, 3]`` float32 in 0..255 (large blobs plus a little noise)."""
    rng = np.random.default_rng(seed)
    base = jax.image.resize(jnp.asarray(rng.uniform(0, 255, (6, 8, 3)), jnp.float32), (h, w, 3), 'cubic')
    return np.clip(np.asarray(base) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.float32)


def exact_objective(params, image, layer=LAYER):
    """mean(act**2) of the whole image: no roll, no tiles."""
    acts = model_apply(TINY, layer)(params, TINY.preprocess(jnp.asarray(image))[None])
    return float(jnp.mean(acts[layer] ** 2))


@pytest.fixture(scope='module')
def params():
    from conftest import random_params
    from jaxvis.models.vgg import TINY_BLOCKS
    return jax.tree_util.tree_map(jnp.asarray, random_params(TINY_BLOCKS, seed=3))


@pytest.fixture(scope='module')
def img():
    return photo(48, 64)


@pytest.fixture(scope='module')
def dream48(params, img):
    return deepdream(params, img, key=jax.random.key(1), **BASE)


# ------------------------------------------------------------------ the objective goes up

def test_objective_increases_within_each_octave(params, img, dream48):
    hist = dream48.history
    assert hist['octaves'] == 2 and hist['shapes'] == [(34, 45), (48, 64)]
    for values in hist['objective']:
        v = np.asarray(values)
        assert v.shape == (12,) and np.all(np.isfinite(v))
        # Each value is measured on a different random roll of the image, so single steps are noisy;
        # the second half of every octave is clearly above the first half.
        assert np.median(v[6:]) > 1.2 * np.median(v[:6]), v
    # and the dreamed image itself (no roll, no tiles) excites the layer far more than the input
    assert exact_objective(params, dream48.image) > 4 * exact_objective(params, img)


def test_mean_objective_goes_up_too(params, img):
    out = deepdream(params, img, model='tiny', layers=LAYER, octaves=1, steps=12, objective='mean',
                    key=jax.random.key(1))
    acts = lambda x: model_apply(TINY, LAYER)(params, TINY.preprocess(jnp.asarray(x))[None])[LAYER]
    assert float(jnp.mean(acts(out.image))) > 1.5 * float(jnp.mean(acts(img)))


# ------------------------------------------------------------------ sizes, dtypes, keys

def test_result_is_rgb_float32_in_range_and_input_sized(dream48, img):
    assert isinstance(dream48, DreamResult)
    assert dream48.image.shape == img.shape and dream48.image.dtype == jnp.float32
    assert float(dream48.image.min()) >= 0.0 and float(dream48.image.max()) <= 255.0
    assert float(jnp.abs(dream48.image - img).mean()) > 1.0  # it did change the image


def test_odd_sizes_come_back_the_same_size(params):
    out = deepdream(params, photo(37, 53).astype(np.uint8), model='tiny', layers=LAYER, octaves=2, steps=1)
    assert out.image.shape == (37, 53, 3)
    assert out.history['shapes'] == [(26, 37), (37, 53)] and len(out.history['objective']) == 2


def test_same_key_same_bits_other_key_other_image(params, img, dream48):
    again = deepdream(params, img, key=jax.random.key(1), **BASE)
    np.testing.assert_array_equal(np.asarray(again.image), np.asarray(dream48.image))
    other = deepdream(params, img, key=jax.random.key(2), **BASE)
    assert float(jnp.abs(other.image - dream48.image).mean()) > 0.5


def test_key_none_means_key_0(params, img):
    kw = dict(model='tiny', layers=LAYER, octaves=1, steps=2)
    a = deepdream(params, img, key=None, **kw).image
    b = deepdream(params, img, key=jax.random.key(0), **kw).image
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------ tiles

def test_plan_axis():
    assert plan_axis(300, 512, 40, 8) == AxisTiles(1, 300, 0)      # fits: one exact tile, no margin
    assert plan_axis(300, None, 40, 8) == AxisTiles(1, 300, 0)
    assert plan_axis(2048, 512, 0, 8) == AxisTiles(4, 512, 0)
    assert plan_axis(1463, 512, 46, 8) == AxisTiles(3, 488, 48)    # balanced cores, stride multiples
    assert plan_axis(513, 512, 0, 16) == AxisTiles(2, 272, 0)      # not 2 x 512
    with pytest.raises(JaxvisError, match='stride'):
        plan_axis(100, 4, 0, 8)


def test_receptive_radius_is_measured_from_the_gradient(params):
    """Measured on the tiny VGG (same geometry as VGG16): 40, 92 and 196 px, the receptive fields of
    conv3_3, conv4_3 and conv5_3 worked out by hand from 3x3 convolutions and 2x2 pools."""
    got = [probe.receptive_radius(TINY, n, params) for n in ('block3_conv3', 'block4_conv3', 'block5_conv3')]
    assert got == [20, 46, 98]
    assert probe.receptive_radius(TINY, 'block1_conv1', params) == 1


def _pool_plus_one(params, x):
    """A 'network' with one stride-2 layer and no receptive field to speak of: 2x2 mean pool, plus 1."""
    n, h, w, c = x.shape
    x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return {'pool': x + 1.0}


@pytest.mark.parametrize('objective', ['mean_square', 'mean'])
@pytest.mark.parametrize('tile, margin', [(16, 0), (12, 4)])
def test_tiles_partition_the_objective_exactly(objective, tile, margin):
    # 37 x 53 in tiles of 16 (or 12): the last tiles run past the image, their extra activations masked out
    x = jnp.asarray(np.random.default_rng(0).normal(0, 1, (37, 53, 3)), jnp.float32)
    tiles = (plan_axis(37, tile, margin, 2), plan_axis(53, tile, margin, 2))
    assert tiles[0].n * tiles[0].core > 37 and tiles[1].n * tiles[1].core > 53
    fn = 'square' if objective == 'mean_square' else 'identity'
    v, g = tiled_value_and_grad(_pool_plus_one, None, x, terms=(LayerTerm('pool', 0.5, fn, 0, 2),), tiles=tiles)
    full = lambda x: 0.5 * jnp.mean((lambda a: a * a if objective == 'mean_square' else a)(
        _pool_plus_one(None, x[None])['pool']))
    np.testing.assert_allclose(v, full(x), rtol=1e-5)
    np.testing.assert_allclose(g, jax.grad(full)(x), rtol=1e-4, atol=1e-7)


def _grads(params, x, tile, margin):
    tiles = (plan_axis(x.shape[0], tile, margin, 4), plan_axis(x.shape[1], tile, margin, 4))
    return tiled_value_and_grad(model_apply(TINY, LAYER), params, x, terms=(LayerTerm(LAYER, 1.0, 'square', 0, 4),),
                                tiles=tiles)


def test_tiled_gradient_is_exact_away_from_the_border_with_a_receptive_field_margin(params):
    x = TINY.preprocess(jnp.asarray(photo(96, 128, seed=1)))
    v0, g0 = _grads(params, x, None, 0)
    assert float(v0) == pytest.approx(exact_objective(params, TINY.deprocess(x)), rel=1e-5)
    r = probe.receptive_radius(TINY, LAYER, params)
    inner = (slice(2 * r, -2 * r), slice(2 * r, -2 * r))  # activations within r of the border differ
    scale = float(jnp.abs(g0[inner]).max())
    _, g_margin = _grads(params, x, 32, r)                 # 3 x 4 tiles of 32 + 2 x 20 px
    assert float(jnp.abs(g_margin - g0)[inner].max()) < 1e-5 * scale
    _, g_plain = _grads(params, x, 32, 0)                  # without context the seams show
    assert float(jnp.abs(g_plain - g0)[inner].max()) > 0.1 * scale


def test_tiled_dream_is_close_to_untiled(params):
    """Same key, so the rolls are identical. Stated tolerance, after one step on a 96 x 128 image:

    the mean difference is at most 35% of the mean change with a receptive-field margin (measured 23%;
    it all comes from the band along the image border, where tiles see zero-padded input, which the
    random roll then spreads over the image) and at most 90% without a margin (measured 74%: tile seams
    as well). A tile size the image fits in reproduces the untiled result bit for bit.
    """
    image = photo(96, 128, seed=1)
    kw = dict(model='tiny', layers=LAYER, octaves=1, steps=1, key=jax.random.key(1))
    ref = np.asarray(deepdream(params, image, tile_size=None, **kw).image)
    change = np.abs(ref - image).mean()
    np.testing.assert_array_equal(np.asarray(deepdream(params, image, tile_size=128, **kw).image), ref)
    margin = np.asarray(deepdream(params, image, tile_size=32, tile_margin=20, **kw).image)
    plain = np.asarray(deepdream(params, image, tile_size=32, **kw).image)
    assert np.abs(margin - ref).mean() < 0.35 * change
    assert np.abs(plain - ref).mean() < 0.90 * change
    assert np.abs(plain - ref).mean() > np.abs(margin - ref).mean()


# ------------------------------------------------------------------ octaves, layers, errors

def test_octaves_too_small_for_the_layer_are_dropped():
    # block4_conv3 has stride 8: sizes 40/2**i = 5, 10, 20, 40 -> the 5 px octave is left out
    assert plan_octaves(TINY, 'block4_conv3', (40, 40), 4, 2.0) == [(10, 10), (20, 20), (40, 40)]
    assert octave_shapes((300, 451), 3, 1.4) == [(153, 230), (214, 322), (300, 451)]


def test_image_too_small_names_the_minimum(params):
    with pytest.raises(JaxvisError, match='at least 8 pixels'):
        deepdream(params, np.zeros((6, 30, 3)), model='tiny', layers='block4_conv3')


def test_unknown_layer_lists_the_valid_ones(params, img):
    with pytest.raises(JaxvisError, match='block5_conv1'):
        deepdream(params, img, model='tiny', layers={'block9_conv9': 1.0})


@pytest.mark.parametrize('kw, match', [
    (dict(objective='max'), 'objective'), (dict(octaves=0), 'octaves'), (dict(steps=0), 'steps'),
    (dict(octave_scale=0.5), 'octave scale'), (dict(tile_size=2), 'tile size'),
    (dict(layers={LAYER: 'x'}), 'number'), (dict(layers={}), 'no layer'), (dict(step_size=-1.0), 'step size'),
    (dict(tile_margin=-3), 'tile margin'), (dict(blur_sigma=float('nan')), 'blur sigma'),
])
def test_bad_options_raise(params, img, kw, match):
    with pytest.raises(JaxvisError, match=match):
        deepdream(params, img, **{**dict(model='tiny', layers=LAYER), **kw})


def test_bad_image_shape_raises(params):
    with pytest.raises(JaxvisError, match=r'\[H, W, 3\]'):
        deepdream(params, np.zeros((32, 32)), model='tiny', layers=LAYER)


def test_weighted_layers_compute_only_up_to_the_deepest(params, img):
    import dataclasses
    asked = []
    spy = dataclasses.replace(TINY, name='tiny-spy', cache={},
                              features=lambda p, x, upto=None: asked.append(upto) or TINY.features(p, x, upto))
    out = deepdream(params, img, model=spy, layers={'block2_conv2': 0.5, LAYER: 1.0}, octaves=1, steps=2)
    assert set(asked) - {None} == {LAYER} and out.image.shape == img.shape  # None: eval_shape probes only


def test_objective_terms_and_the_border_crop(params):
    """One vocabulary: DeepDream's objective is jaxvis.objectives' deepdream/layer_mean; a crop leaves
    out that many activations at each border of the whole image, tiles or not."""
    obj = 0.5 * O.deepdream('block2_conv2') + 2.0 * O.layer_mean(LAYER, crop=2)
    assert obj.terms == (O.Term('block2_conv2', 0.5, 'square', 0), O.Term(LAYER, 2.0, 'identity', 2))
    x = TINY.preprocess(jnp.asarray(photo(48, 64)))
    acts = model_apply(TINY, LAYER)(params, x[None])
    want = 0.5 * jnp.mean(acts['block2_conv2'] ** 2) + 2.0 * jnp.mean(acts[LAYER][:, 2:-2, 2:-2])
    np.testing.assert_allclose(obj(acts, 0), want, rtol=1e-6)
    terms = ascent.layer_terms(TINY, DreamConfig(objective=obj))
    tiles = (plan_axis(48, None, 0, 4), plan_axis(64, None, 0, 4))
    v, _ = tiled_value_and_grad(model_apply(TINY, LAYER), params, x, terms=terms, tiles=tiles)
    np.testing.assert_allclose(v, want, rtol=1e-5)
    # tiles cut the cropped objective exactly (a network without a receptive field: tiles need no context)
    z = jnp.asarray(np.random.default_rng(0).normal(0, 1, (37, 53, 3)), jnp.float32)
    tiles = (plan_axis(37, 12, 0, 2), plan_axis(53, 12, 0, 2))
    v, _ = tiled_value_and_grad(_pool_plus_one, None, z, terms=(LayerTerm('pool', 1.0, 'identity', 3, 2),),
                                tiles=tiles)
    np.testing.assert_allclose(v, jnp.mean(_pool_plus_one(None, z[None])['pool'][:, 3:-3, 3:-3]), rtol=1e-5)
    with pytest.raises(JaxvisError, match='layer terms'):
        DreamConfig(objective=O.channel(LAYER, 3))


# ------------------------------------------------------------------ sequences

def test_dream_sequence_frames_shape_and_callback(params, img):
    _finish, _prepare = ascent._finish, ascent._prepare
    seen, compiled = [], []

    def on_frame(i, res):
        seen.append((i, res.image.shape))
        compiled.append((_tile_step()._cache_size(), _prepare._cache_size(), _finish._cache_size()))

    frames = dream_sequence(params, img, DreamConfig.make(LAYER, octaves=2, steps=2), frames=3, zoom=1.1, rotate=5.0,
                            key=jax.random.key(0), on_frame=on_frame, model='tiny')
    assert frames.shape == (3,) + img.shape and frames.dtype == jnp.float32
    assert seen == [(0, img.shape), (1, img.shape), (2, img.shape)]
    assert compiled[0] == compiled[1] == compiled[2]  # frames after the first compile nothing new
    first = deepdream(params, img, key=jax.random.split(jax.random.key(0), 3)[0], model='tiny', layers=LAYER,
                      octaves=2, steps=2).image
    np.testing.assert_array_equal(np.asarray(frames[0]), np.asarray(first))
    assert float(jnp.abs(frames[2] - frames[1]).mean()) > 1.0


# ------------------------------------------------------------------ image ops

def test_mirror_roll_small_array():
    x = jnp.arange(5.0)[:, None, None] * jnp.ones((1, 2, 1))
    rows = lambda d: np.asarray(mirror_roll(x, jnp.array([d, 0]))[:, 0, 0]).tolist()
    assert rows(0) == [0, 1, 2, 3, 4]
    assert rows(2) == [1, 0, 0, 1, 2]      # mirror fold at the top edge, no wrap-around seam
    assert rows(5) == [4, 3, 2, 1, 0]
    assert rows(7) == [3, 4, 4, 3, 2]


def test_zoom_rotate():
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (5, 5, 3)), jnp.float32)
    np.testing.assert_allclose(zoom_rotate(x), x, atol=1e-4)
    np.testing.assert_allclose(zoom_rotate(x, degrees=90.0), np.rot90(np.asarray(x), 1), atol=1e-3)
    z = zoom_rotate(x, zoom=2.0)
    np.testing.assert_allclose(z[2, 2], x[2, 2], atol=1e-4)                       # the centre stays
    np.testing.assert_allclose(z[0, 2], x[1, 2], atol=1e-3)                       # 2x magnified:
    np.testing.assert_allclose(z[1, 2], (x[1, 2] + x[2, 2]) / 2, atol=1e-3)       # half-pixel steps


def test_upscaling_puts_back_the_detail_the_downscale_lost():
    _upscale_with_detail = upscale_with_detail
    original = jnp.asarray(photo(48, 64))
    small = resize(original, (34, 45))
    # an octave that did not dream comes back as the original itself, not as a blurred upscale
    np.testing.assert_allclose(_upscale_with_detail(small, original, (34, 45), (48, 64)), original, atol=1e-3)
    assert float(jnp.abs(resize(small, (48, 64)) - original).mean()) > 2.0
    # and what the octave added is carried up: dream + detail
    bump = jnp.zeros((34, 45, 3)).at[10:20, 10:20].set(30.0)
    up = _upscale_with_detail(small + bump, original, (34, 45), (48, 64))
    np.testing.assert_allclose(up - original, resize(bump, (48, 64)), atol=1e-3)


def test_resize_is_linear_and_identity_at_same_size():
    a, b = jnp.asarray(photo(20, 30, 1)), jnp.asarray(photo(20, 30, 2))
    assert resize(a, (20, 30)) is a
    np.testing.assert_allclose(resize(a - b, (13, 17)), resize(a, (13, 17)) - resize(b, (13, 17)), atol=1e-3)
