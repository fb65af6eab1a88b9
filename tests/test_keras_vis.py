"""The keras-vis preset (seed 004): its loss terms and its update against plain numpy written from keras-vis
0.4.1's formulas (vis/regularizers.py, vis/optimizer.py, in its channels-first slicing), and the objective
going up on the tiny model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import display, optim
from jaxvis import penalties as L
from jaxvis.errors import JaxvisError
from jaxvis.visualize import preset
from jaxvis.visualize.engine import visualize_filters
from jaxvis.visualize.start import filter_keys, start_point

RNG = np.random.default_rng(4)


def np_lp(img, p=6.0):
    """keras-vis LPNorm on ``img`` (samples, channels, rows, cols): K.pow(K.sum(K.pow(K.abs(img), p)), 1/p) / C*H*W."""
    return np.sum(np.abs(img) ** p) ** (1.0 / p) / np.prod(img.shape[1:])


def np_tv(img, beta=2.0):
    """keras-vis TotalVariation on ``img`` (samples, channels, rows, cols), its loop over image dims unrolled."""
    a = np.square(img[:, :, 1:, :-1] - img[:, :, :-1, :-1])
    b = np.square(img[:, :, :-1, 1:] - img[:, :, :-1, :-1])
    return np.sum((a + b) ** (beta / 2.0)) / np.prod(img.shape[1:])


def np_grads(img, p=6.0):
    """d LPNorm / d img and d TotalVariation(beta=2) / d img, by hand, on (samples, channels, rows, cols)."""
    n = np.prod(img.shape[1:])
    s = np.sum(np.abs(img) ** p)
    g_lp = s ** (1.0 / p - 1.0) * np.abs(img) ** (p - 1.0) * np.sign(img) / n
    g_tv = np.zeros_like(img)
    dh = img[:, :, 1:, :-1] - img[:, :, :-1, :-1]
    dw = img[:, :, :-1, 1:] - img[:, :, :-1, :-1]
    g_tv[:, :, 1:, :-1] += 2 * dh
    g_tv[:, :, :-1, :-1] -= 2 * dh + 2 * dw
    g_tv[:, :, :-1, 1:] += 2 * dw
    return g_lp, g_tv / n


def hwc(nchw):
    return jnp.asarray(np.moveaxis(nchw[0], 0, -1))


@pytest.mark.parametrize('shape', [(1, 3, 5, 7), (1, 2, 4, 4)])
def test_penalties_equal_keras_vis_formulas(shape):
    img = RNG.uniform(-130, 150, shape).astype(np.float32)
    np.testing.assert_allclose(float(L.lp_norm(6.0).value(hwc(img))), np_lp(img.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(float(L.total_variation(2.0).value(hwc(img))), np_tv(img.astype(np.float64)),
                               rtol=1e-5)
    np.testing.assert_allclose(float(L.total_variation(3.0).value(hwc(img))),
                               np_tv(img.astype(np.float64), 3.0), rtol=1e-5)
    # a constant image has no variation; a roll changes TV (no wrap-around)
    assert float(L.total_variation().value(jnp.full((4, 4, 3), 7.0))) == 0.0


def test_update_equals_keras_vis_optimizer_for_three_steps():
    """The preset's optax chain vs keras-vis's minimize loop: grads of the weighted loss, RMS-normalized,
    then _rmsprop(decay 0.95) from a zero cache, added to the image."""
    cfg = preset('keras-vis')
    img = RNG.uniform(100, 160, (1, 3, 6, 5))
    x, state = hwc(img.astype(np.float32)), cfg.optimizer.init(hwc(img.astype(np.float32)))
    cache = np.zeros_like(img)
    for _ in range(3):
        g_act = RNG.normal(size=img.shape)  # d(-mean activation)/d img, any array
        g_lp, g_tv = np_grads(img)
        grads = g_act + 10 * g_lp + 10 * g_tv
        grads = grads / (np.sqrt(np.mean(np.square(grads))) + 1e-7)
        cache = 0.95 * cache + 0.05 * grads ** 2
        img = img - grads / np.sqrt(cache + 1e-7)
        up, state = cfg.optimizer.update(hwc(g_act.astype(np.float32)), state, x)
        x = x + up
    np.testing.assert_allclose(np.asarray(x), np.moveaxis(img[0], 0, -1), rtol=0, atol=2e-3)


def test_preset_numbers_and_options():
    cfg = preset('keras-vis')
    assert cfg.steps == 200 and cfg.transform.__name__ == 'jitter(16)' and cfg.param.space == 'input'
    start = np.asarray(cfg.param.init(jax.random.key(0), (224, 224, 3)))
    assert abs(start.mean() - 127.5) < 0.3 and abs(start.std() - 12.75) < 0.1   # random_array(127.5, 0.05*255)
    assert preset('keras-vis', tv_weight=0.0).optimizer != cfg.optimizer
    assert preset('keras-vis') == cfg
    with pytest.raises(JaxvisError, match='takes no decay'):
        preset('keras-vis', decay=0.1)
    with pytest.raises(JaxvisError, match='beta'):
        L.total_variation(1.5)


def test_objective_goes_up(h5w):
    """keras-vis's objective, ``mean activation - 10 LPNorm - 10 TotalVariation`` (minus its loss), goes up
    from the start image to the result; the activation alone may fall while TV smooths the start noise."""
    params = h5w.random_params(h5w.TINY, seed=3)
    cfg, key, layer = preset('keras-vis', steps=12), jax.random.key(0), 'block1_conv1'
    res = visualize_filters(params, layer, range(4), cfg, model='tiny', size=16, key=key)
    starts = jax.jit(jax.vmap(lambda k: start_point(cfg, k, 16)))(filter_keys(key, layer, np.arange(4)))
    pen = jax.jit(jax.vmap(lambda x: 10 * L.lp_norm(6.0).value(x) + 10 * L.total_variation(2.0).value(x)))
    before = res.history[0] - np.asarray(pen(starts))
    after = res.losses - np.asarray(pen(jnp.asarray(res.images)))
    assert np.all(after > before + 0.1 * np.abs(before)), (before, after)
    assert np.all(np.isfinite(res.images))


def test_penalty_gradient_needs_params():
    tx = optim.add_penalty_gradient(L.lp_norm(6.0), 10.0)
    with pytest.raises(ValueError):
        tx.update(jnp.ones((2, 2, 3)), tx.init(None))


def test_centred_display_removes_each_channels_mean_only():
    """The keras-vis preset's display: a pattern under per-channel offsets (VGG's caffe mean added back)
    looks the same as the pattern alone, normalized as keras-vis's deprocess_input."""
    pattern = RNG.normal(size=(5, 6, 3)) * 3.0
    shown = display.centred_normalize(pattern + np.array([123.7, 116.8, 103.9]))
    x = pattern - pattern.reshape(-1, 3).mean(0)
    x = (x - x.mean()) / (x.std() + 1e-7) * 0.1 + 0.5     # utils.deprocess_input, input_range (0, 255)
    np.testing.assert_array_equal(shown, (np.clip(x, 0, 1) * 255).astype(np.uint8))
    # seed 003's normalization of the same picture is mostly the flat colour: per channel, less contrast
    flat = display.seed_normalize(pattern + np.array([123.7, 116.8, 103.9]))
    assert shown.std(axis=(0, 1)).min() > 2 * flat.std(axis=(0, 1)).max()
