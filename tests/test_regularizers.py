"""jaxvis.regularizers: exact effects on small arrays, order of chain, average's weights, jit / vmap.

Arrays are built with distinct values (norms, contributions) so a percentile zeroes an exact count.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import image_ops
from jaxvis import regularizers as R
from jaxvis.errors import JaxvisError
from jaxvis.visualize.presets import pixel_regularizer


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def pixels_with_norms(norms, seed=0):
    """``[H, W, 3]`` whose pixel L2 norms are ``norms`` ``[H, W]`` (random directions)."""
    d = np.random.default_rng(seed).standard_normal(norms.shape + (3,))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return (d * norms[..., None]).astype(np.float32)


def apply(reg, x, g=None, step=0):
    g = np.zeros_like(x) if g is None else g
    return np.asarray(reg.apply(jnp.asarray(x), jnp.asarray(g), jnp.int32(step)))


# ------------------------------------------------------------------ decay

@pytest.mark.parametrize('rate', [0.2, 0.0001, 0.3])
def test_decay_multiplies_by_one_minus_rate_exactly(rate):
    x = rand((4, 5, 3), seed=1, lo=-150, hi=150)
    np.testing.assert_array_equal(apply(R.decay(rate), x), x * np.float32(1 - rate))


def test_identity_returns_x():
    x = rand((3, 3, 3))
    np.testing.assert_array_equal(apply(R.identity(), x, rand((3, 3, 3), 1), 5), x)


# ------------------------------------------------------------------ blur every k steps

def test_gaussian_blur_every_4_changes_x_only_on_steps_0_4_8():
    x = rand((6, 6, 3), seed=2, lo=-50, hi=50)
    reg = R.gaussian_blur(0.5, every=4)
    blurred = np.asarray(image_ops.gaussian_blur(jnp.asarray(x), 0.5))
    for step in range(10):
        out = apply(reg, x, step=step)
        if step in (0, 4, 8):
            np.testing.assert_allclose(out, blurred, rtol=1e-6, atol=1e-5)
            assert np.abs(out - x).max() > 1.0
        else:
            np.testing.assert_array_equal(out, x)
    steps = jnp.arange(10, dtype=jnp.int32)  # traced steps, as in the engine
    outs = np.asarray(jax.jit(jax.vmap(lambda t: reg.apply(jnp.asarray(x), jnp.zeros_like(x), t)))(steps))
    changed = [t for t in range(10) if not np.array_equal(outs[t], x)]
    assert changed == [0, 4, 8]


def test_box_blur_regularizer_every_2():
    x = rand((5, 5, 3), seed=3)
    reg = R.box_blur(3, every=2)
    np.testing.assert_allclose(apply(reg, x, step=2), np.asarray(image_ops.box_blur(jnp.asarray(x), 3)),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(apply(reg, x, step=3), x)


# ------------------------------------------------------------------ percentile clips

def test_clip_small_norm_zeroes_exactly_the_smallest_pixels_in_all_channels():
    norms = (np.random.default_rng(4).permutation(100) + 1.0).reshape(10, 10)
    x = pixels_with_norms(norms, seed=4)
    out = apply(R.clip_small_norm(20.0), x)
    zeroed = np.all(out == 0, axis=-1)
    assert zeroed.sum() == 20
    np.testing.assert_array_equal(zeroed, norms <= 20)
    np.testing.assert_array_equal(out[~zeroed], x[~zeroed])  # the others bit for bit


def test_clip_small_contribution_uses_x_times_grad():
    rng = np.random.default_rng(5)
    x = rand((10, 10, 3), seed=5, lo=0.5, hi=2.0)
    contrib = (rng.permutation(100) + 1.0).reshape(10, 10) * np.where(rng.random((10, 10)) < 0.5, -1, 1)
    g = rng.uniform(-40, 40, (10, 10, 3)).astype(np.float32)  # channels 1, 2 partly cancel channel 0:
    g[..., 0] = (contrib - x[..., 1] * g[..., 1] - x[..., 2] * g[..., 2]) / x[..., 0]  # sum_c x_c g_c = contrib
    out = apply(R.clip_small_contribution(30.0), x, g)
    zeroed = np.all(out == 0, axis=-1)
    # ceil(0.3 * 99) = 30 pixels, the 30 smallest |contribution|
    np.testing.assert_array_equal(zeroed, np.abs(contrib) <= 30)
    np.testing.assert_array_equal(out[~zeroed], x[~zeroed])
    # The same x with another gradient zeroes other pixels: the mask is not a function of x alone.
    g2 = np.zeros_like(x)
    g2[..., 0] = contrib[::-1] / x[..., 0]
    assert not np.array_equal(np.abs(contrib[::-1]) <= 30, np.abs(contrib) <= 30)
    zeroed2 = np.all(apply(R.clip_small_contribution(30.0), x, g2) == 0, axis=-1)
    np.testing.assert_array_equal(zeroed2, np.abs(contrib[::-1]) <= 30)


def test_clip_small_value_zeroes_single_values():
    v = (np.random.default_rng(6).permutation(300) + 1.0) * np.where(np.arange(300) % 2, -1, 1)
    x = v.reshape(10, 10, 3).astype(np.float32)
    out = apply(R.clip_small_value(10.0), x)
    n = math.ceil(0.1 * 299)  # 30
    np.testing.assert_array_equal(out == 0, np.abs(x) <= n)
    np.testing.assert_array_equal(out[out != 0], x[out != 0])
    # per value, not per pixel: some pixels keep a channel while losing another
    assert np.any(np.any(out == 0, axis=-1) & np.any(out != 0, axis=-1))


# ------------------------------------------------------------------ chain and average

def test_chain_applies_left_to_right_and_order_matters():
    x = rand((8, 8, 3), seed=7, lo=-10, hi=10)
    blur, clip = R.gaussian_blur(1.0), R.clip_small_value(40.0)
    bc, cb = apply(R.chain(blur, clip), x), apply(R.chain(clip, blur), x)
    np.testing.assert_array_equal(bc, apply(clip, apply(blur, x)))
    np.testing.assert_array_equal(cb, apply(blur, apply(clip, x)))
    assert np.abs(bc - cb).max() > 0.1
    # After blur-then-clip, 40 % of the values are exactly 0; after clip-then-blur almost none are.
    assert (bc == 0).mean() > 0.39 and (cb == 0).mean() < 0.05


def test_chain_decay_then_clip_equals_the_explicit_composition():
    # decay and a percentile clip commute (the mask is scale invariant), so check the values themselves
    x = rand((6, 6, 3), seed=8, lo=-10, hi=10)
    out = apply(R.chain(R.decay(0.5), R.clip_small_norm(25.0)), x)
    ref = x * np.float32(0.5)
    n = np.linalg.norm(x, axis=-1)
    ref[n < np.percentile(n, 25.0)] = 0
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_filter_config_chains_in_the_documented_order():
    # decay, blur, value clip, norm clip, contribution clip (pixel_regularizer's docstring)
    x = rand((8, 8, 3), seed=9, lo=-10, hi=10)
    g = rand((8, 8, 3), seed=10)
    reg = pixel_regularizer(decay=0.1, blur_sigma=0.8, value_pct=5.0, norm_pct=30.0, contrib_pct=20.0)
    want = x
    for r in (R.decay(0.1), R.gaussian_blur(0.8), R.clip_small_value(5.0), R.clip_small_norm(30.0),
              R.clip_small_contribution(20.0)):
        want = apply(r, want, g)
    np.testing.assert_allclose(apply(reg, x, g), want, rtol=1e-6, atol=1e-6)
    # blur after the norm clip would differ
    other = apply(R.chain(R.decay(0.1), R.clip_small_norm(30.0), R.gaussian_blur(0.8)), x, g)
    assert np.abs(other - want).max() > 0.1


def test_average_331_equals_explicit_formula_and_weights_are_normalized():
    x = rand((7, 7, 3), seed=11, lo=-100, hi=100)
    box, dec, clip = R.box_blur(3), R.decay(0.2), R.clip_small_value(1.0)
    out = apply(R.average((3.0, box), (3.0, dec), (1.0, clip)), x)
    ref = (3 * ref_box(x) + 3 * 0.8 * x.astype(np.float64) + 1 * apply(clip, x)) / 7
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    scaled = apply(R.average((6.0, box), (6.0, dec), (2.0, clip)), x)
    np.testing.assert_allclose(scaled, out, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(apply(R.average((5.0, R.identity())), x), x, rtol=1e-6)


def ref_box(x):
    h, w = x.shape[:2]
    xp = np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode='reflect')
    return sum(xp[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9


def test_jacobgil_preset_regularizer_is_the_331_average():
    from jaxvis.visualize import preset
    x = rand((6, 6, 3), seed=12, lo=-100, hi=100)
    want = apply(R.average((3.0, R.box_blur(3)), (3.0, R.decay(0.2)), (1.0, R.clip_small_value(1.0))), x)
    np.testing.assert_allclose(apply(preset('jacobgil').regularizer, x), want, rtol=1e-6)


@pytest.mark.parametrize('make, match', [
    (lambda: R.decay(1.0), 'decay'), (lambda: R.decay(-0.1), 'decay'), (lambda: R.gaussian_blur(0.0), 'sigma'),
    (lambda: R.gaussian_blur(1.0, every=0), 'every'), (lambda: R.box_blur(0), 'box blur size'),
    (lambda: R.clip_small_norm(100.0), 'norm percentile'), (lambda: R.clip_small_value(-1.0), 'value percentile'),
    (lambda: R.clip_small_contribution(float('nan')), 'contribution percentile'),
])
def test_factories_refuse_out_of_range_options(make, match):
    with pytest.raises(JaxvisError, match=match):
        make()


def test_factories_are_cached_so_configs_compare_equal():
    assert R.decay(0.2) is R.decay(0.2) and R.chain(R.decay(0.2)) is R.chain(R.decay(0.2))
    assert R.chain() is R.identity() and R.chain(R.identity(), R.decay(0.1)) is R.chain(R.decay(0.1))


# ------------------------------------------------------------------ jit and vmap (dm_pix style)

REGS = {
    'identity': R.identity(),
    'decay': R.decay(0.2),
    'gauss_every3': R.gaussian_blur(0.7, every=3),
    'box': R.box_blur(3),
    'norm': R.clip_small_norm(20.0),
    'contrib': R.clip_small_contribution(50.0),
    'value': R.clip_small_value(10.0),
    'chain': R.chain(R.decay(0.1), R.gaussian_blur(0.5, every=2), R.clip_small_norm(30.0)),
    'average': R.average((3.0, R.box_blur(3)), (3.0, R.decay(0.2)), (1.0, R.clip_small_value(1.0))),
}


@pytest.mark.parametrize('name', list(REGS))
def test_jit_equals_eager_and_vmap_equals_loop(name):
    reg = REGS[name]
    xs = jnp.asarray(rand((4, 8, 8, 3), seed=13, lo=-50, hi=50))
    gs = jnp.asarray(rand((4, 8, 8, 3), seed=14))
    steps = jnp.arange(4, dtype=jnp.int32)  # 0..3: the blur 'every' condition differs inside the batch
    eager = np.stack([np.asarray(reg.apply(xs[i], gs[i], steps[i])) for i in range(4)])
    jitted = jax.jit(reg.apply)
    jit_out = np.stack([np.asarray(jitted(xs[i], gs[i], steps[i])) for i in range(4)])
    vmap_out = np.asarray(jax.jit(jax.vmap(reg.apply))(xs, gs, steps))
    np.testing.assert_allclose(jit_out, eager, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(vmap_out, eager, rtol=1e-6, atol=1e-5)
    if name != 'identity':
        assert np.abs(eager - np.asarray(xs)).max() > 1e-3  # it did something
