"""MACO: the phase-only param and its fixed spectrum, the crops, the preset's ascent and transparency,
and the dead-filter restart rule."""
from __future__ import annotations

import glob
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import display, metrics, spectrum
from jaxvis import param as P
from jaxvis import transforms as T
from jaxvis.visualize import preset, visualize_filters
from jaxvis.visualize.start import restart_point
from jaxvis.visualize.step import restart_dead

KEY = jax.random.key(0)
SCRIPTS = os.path.join(os.path.dirname(__file__), '..', 'scripts')


def _decorrelated(img):
    """Numpy float64 inverse of maco's last two steps (sigmoid, decorrelated -> RGB)."""
    x = np.asarray(img, np.float64)
    return np.log(x / (1 - x)) @ np.linalg.inv(P.COLOR_MATRIX.astype(np.float64)).T


@pytest.mark.parametrize('shape', [(32, 32, 3), (24, 40, 3)])
def test_image_spectrum_magnitude_is_the_template(shape):
    """|rfft2| of the image (before colour and sigmoid) is template / std, at every coefficient that
    irfft2 keeps as given: not the DC (the mean is removed) nor columns 0 and W/2 (made Hermitian)."""
    h, w, _ = shape
    img = P.maco().to_image(P.maco().init(KEY, shape))
    assert img.shape == shape and img.dtype == jnp.float32 and 0 < float(img.min()) and float(img.max()) < 1
    t = _decorrelated(img)
    assert abs(t.mean()) < 1e-4 and abs(t.std() - 1) < 1e-3   # standardized
    mag = np.abs(np.fft.rfft2(t, axes=(0, 1)))[:, 1:w // 2]
    tmpl = spectrum.template(h, w)[:, 1:w // 2]
    ratio = np.median(mag / tmpl)
    np.testing.assert_allclose(mag, ratio * tmpl, rtol=2e-3, atol=1e-4 * mag.max())


def test_template_resampling_and_mean_magnitude():
    """mean_magnitude is the mean |DFT| (a plain DFT matrix here); resample is the identity at the
    template's size and scales with the pixel count; the shipped array is [128, 65, 3], positive."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 8, 2))
    fy, fx = np.exp(-2j * np.pi * np.outer(np.arange(6), np.arange(6)) / 6), \
        np.exp(-2j * np.pi * np.outer(np.arange(8), np.arange(5)) / 8)
    dft = np.einsum('yk,nkxc,xl->nylc', fy, x, fx)
    np.testing.assert_allclose(spectrum.mean_magnitude(x), np.abs(dft).mean(0), rtol=1e-5)
    s = spectrum.shipped()
    assert s.shape == (128, 65, 3) and s.dtype == np.float32 and float(s.min()) > 0
    np.testing.assert_array_equal(spectrum.template(128, 128), s)
    flat = np.ones((16, 9, 2), np.float32)
    np.testing.assert_allclose(spectrum.resample(flat, 8, 8), np.full((8, 5, 2), 0.25), rtol=1e-6)
    # the DC of a 64 x 64 template reads the 128 one's DC, times a quarter
    np.testing.assert_allclose(spectrum.template(64, 64)[0, 0], s[0, 0] / 4, rtol=1e-6)


def _wheel():
    found = [os.environ.get('JAXVIS_SKIMAGE_WHEEL', '')] + sorted(glob.glob('/opt/pypi/files/scikit_image-0.26.0-*.whl'))
    return next((w for w in found if w and os.path.exists(w)), None)


@pytest.mark.skipif(_wheel() is None, reason='no scikit-image 0.26.0 wheel here ($JAXVIS_SKIMAGE_WHEEL); tests never download')
def test_spectrum_script_reproduces_the_shipped_array():
    sys.path.insert(0, SCRIPTS)
    try:
        import maco_spectrum
    finally:
        sys.path.remove(SCRIPTS)
    made = maco_spectrum.make(_wheel(), 128)
    np.testing.assert_array_equal(made['magnitude'], spectrum.shipped())


def test_param_and_crops_jit_equal_eager_and_vmap_equal_loop():
    param, crops = P.maco(), T.maco_crops(3)
    keys = jax.random.split(KEY, 4)
    ps = jax.vmap(lambda k: param.init(k, (16, 16, 3)))(keys)
    # the batched calls jitted, as the engine runs them (eagerly, vmap compiles every primitive on its own:
    # 6 s more); each image's own call eager and jitted
    imgs = jax.jit(jax.vmap(param.to_image))(ps)
    for i in range(4):
        one = jax.tree_util.tree_map(lambda a: a[i], ps)
        np.testing.assert_allclose(param.to_image(one), imgs[i], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(jax.jit(param.to_image)(one), param.to_image(one), rtol=1e-6, atol=1e-6)
    views = jax.jit(jax.vmap(crops))(keys, imgs)
    assert views.shape == (4, 3, 16, 16, 3)
    for i in range(4):
        np.testing.assert_allclose(crops(keys[i], imgs[i]), views[i], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(jax.jit(crops)(keys[i], imgs[i]), views[i], rtol=1e-6, atol=1e-6)


def test_crop_is_tf_crop_and_resize_without_noise():
    """A crop of side 0.5 at the centre reads rows (0.25 * (H - 1)) + 0.5 * i, as tf.image.crop_and_resize."""
    x = jnp.arange(9 * 9, dtype=jnp.float32).reshape(9, 9, 1)
    crop = T.maco_crops(1, box=0.5, box_sd=0.0, centre_sd=0.0, noise=0.0)(KEY, x)[0]
    rows = 2.0 + 0.5 * np.arange(9)
    want = rows[:, None] * 9 + rows[None, :]
    np.testing.assert_allclose(crop[..., 0], want, rtol=1e-6)


def test_maco_preset_objective_goes_up_and_alpha(tiny_params):
    """12 steps of the maco preset's param and NAdam on the tiny VGG (crops replaced by the identity,
    so that the image scored is the image optimized): every filter's final objective beats its start;
    alpha is the accumulated |gradient|, >= 0 and not all 0; RGBA shows it."""
    r = visualize_filters(tiny_params, 'block3_conv1', [0, 1, 2], preset('maco', steps=12, transform=T.identity()),
                          model='tiny', size=32, snapshot_every=12)
    start = metrics.activation(metrics.channel_means(tiny_params, 'block3_conv1', r.snapshots[0], model='tiny'),
                               r.filters)
    assert np.all(r.losses > np.asarray(start)), (r.losses, start)
    assert r.alpha.shape == (3, 32, 32) and float(r.alpha.min()) >= 0 and float(r.alpha.max()) > 0
    assert 0 <= float(r.images.min()) and float(r.images.max()) <= 255
    rgba = display.maco_rgba(r.images[0], r.alpha[0])
    assert rgba.shape == (32, 32, 4) and rgba.dtype == np.uint8 and rgba[..., 3].max() == 255


def test_restart_rule_same_bytes_alone_and_in_a_batch():
    """At a restart step a dead filter (here: loss <= 0) gets restart_point of its own key and a fresh
    optimizer state, a live one keeps both; vmapped over 4 filters = each alone, bit for bit."""
    cfg = preset('lucid', steps=40)
    keys = jax.random.split(KEY, 4)
    p = jax.vmap(lambda k: cfg.param.init(k, (16, 16, 3)))(keys)
    p = jax.tree_util.tree_map(lambda a: a + 0.3, p)    # not a start point
    opt = jax.vmap(cfg.optimizer.init)(p)
    loss = jnp.asarray([-1.0, 2.0, 0.0, 3.0])
    t = jnp.int32(cfg.restarts[0])
    rule = jax.jit(lambda *a: restart_dead(cfg, *a))
    batch = jax.vmap(rule, in_axes=(0, 0, 0, 0, None))(p, opt, loss <= 0, keys, t)
    for i in range(4):
        take = lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)
        alone = rule(take(p), take(opt), loss[i] <= 0, keys[i], t)
        for a, b in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(take(batch))):
            np.testing.assert_array_equal(a, b)
        fresh = restart_point(cfg, keys[i], t, (16, 16, 3))
        want = fresh if loss[i] <= 0 else take(p)
        np.testing.assert_allclose(alone[0].coeffs, want.coeffs, rtol=1e-5, atol=1e-4)  # jit vs eager FFT rounding
    off = rule(take(p), take(opt), jnp.bool_(True), keys[3], jnp.int32(cfg.restarts[0] + 1))
    np.testing.assert_array_equal(off[0].coeffs, take(p).coeffs)   # not a restart step: unchanged


def test_seed_preset_has_no_restarts():
    assert preset('seed').restarts == () and preset('seed').redirect_relu_steps == 0
    assert preset('maco').restarts and preset('lucid').restarts
