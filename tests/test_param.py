"""Image parameterizations: shapes and ranges, the 1/f spectrum scaling, Lucid's colour matrix, inverses."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import param as P

KEY = jax.random.key(0)
ALL = {
    'pixel-rgb': P.image(fft=False, decorrelate=False),
    'pixel-decorrelated': P.image(fft=False, decorrelate=True),
    'fourier-rgb': P.image(fft=True, decorrelate=False),
    'lucid': P.image(fft=True, decorrelate=True),
    'lucid-clip': P.image(fft=True, decorrelate=True, sigmoid=False),
}


@pytest.mark.parametrize('name', sorted(ALL))
@pytest.mark.parametrize('shape', [(16, 16, 3), (9, 7, 3), (8, 11, 3)])
def test_image_shape_and_range(name, shape):
    param = ALL[name]
    p = param.init(KEY, shape)
    # far from the start point too: large params must still give valid colours
    big = jax.tree_util.tree_map(lambda a: 300.0 * jax.random.normal(KEY, a.shape), p)
    for q in (p, big):
        img = param.to_image(q)
        assert img.shape == shape and img.dtype == jnp.float32
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0


def test_start_is_mid_gray_and_random():
    img = ALL['lucid'].to_image(ALL['lucid'].init(KEY, (32, 32, 3)))
    assert abs(float(img.mean()) - 0.5) < 0.02 and float(img.std()) > 1e-4
    other = ALL['lucid'].to_image(ALL['lucid'].init(jax.random.key(1), (32, 32, 3)))
    assert not np.allclose(img, other)


@pytest.mark.parametrize('h, w', [(16, 16), (12, 20), (9, 7)])
@pytest.mark.parametrize('decay', [1.0, 2.0])
def test_fourier_spectrum_falls_as_one_over_f(h, w, decay):
    """All-ones real coefficients: the image's spectrum is exactly 1 / max(f, 1/max(h, w)) ** decay / 4."""
    fourier = P.fourier(decay_power=decay)
    p = fourier.init(KEY, (h, w, 3))
    ones = P.Spectrum(coeffs=jnp.zeros_like(p.coeffs).at[..., 0].set(1.0), width=w)
    img = fourier.to_image(ones)
    assert img.shape == (h, w, 3)
    spec = np.fft.rfft2(np.asarray(img, np.float64), axes=(0, 1), norm='ortho')
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    expected = 1.0 / np.maximum(f, 1.0 / max(h, w)) ** decay / 4.0
    np.testing.assert_allclose(np.abs(spec), np.repeat(expected[..., None], 3, -1), rtol=1e-4, atol=1e-6)
    # so, away from DC, |F| * f**decay is constant: energy falls as 1/f
    k = f > 1.0 / max(h, w)
    np.testing.assert_allclose(np.abs(spec[..., 0])[k] * f[k] ** decay, 0.25, rtol=1e-4)


def test_fourier_init_sd_and_unitary_scale():
    fourier = P.fourier(sd=0.5)
    p = fourier.init(KEY, (64, 64, 3))
    assert p.coeffs.shape == (64, 33, 3, 2) and p.width == 64
    assert abs(float(jnp.std(p.coeffs)) - 0.5) < 0.02
    # a flat spectrum (decay 0) gives pixels of about the coefficients' size: the ortho FFT is unitary
    flat = P.fourier(sd=1.0, decay_power=0.0)
    img = flat.to_image(flat.init(KEY, (64, 64, 3))) * P.FOURIER_MAGIC
    assert 1.0 < float(jnp.std(img)) < 1.6  # Hermitian pairs: sqrt(2) for complex N(0, 1) coefficients


def test_lucid_color_constant():
    lucid = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
    np.testing.assert_array_equal(P.COLOR_CORRELATION_SVD_SQRT, lucid)
    np.testing.assert_allclose(P.COLOR_MATRIX, lucid / np.max(np.linalg.norm(lucid, axis=0)))
    assert np.isclose(np.max(np.linalg.norm(P.COLOR_MATRIX, axis=0)), 1.0)


def test_decorrelation_round_trip_and_direction():
    t = jax.random.normal(KEY, (5, 4, 3))
    np.testing.assert_allclose(P.rgb_to_decorrelated(P.decorrelated_to_rgb(t)), t, atol=1e-5)
    np.testing.assert_allclose(P.decorrelated_to_rgb(P.rgb_to_decorrelated(t)), t, atol=1e-5)
    # the first decorrelated axis is luminance: it moves R, G and B together
    rgb = P.decorrelated_to_rgb(jnp.asarray([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(rgb, P.COLOR_MATRIX[:, 0], rtol=1e-6)
    assert float(rgb.min()) > 0.9 * float(rgb.max())


@pytest.mark.parametrize('name', sorted(ALL))
def test_from_image_inverts_to_image(name):
    param = ALL[name]
    img = jax.random.uniform(KEY, (10, 9, 3), minval=0.05, maxval=0.95)
    np.testing.assert_allclose(param.to_image(param.from_image(img)), img, atol=2e-4)


def test_sigmoid_false_clips_with_straight_through_gradient():
    t = jnp.asarray([[-3.0, 0.0, 3.0]])
    out = P.to_valid_rgb(t, decorrelate=False, sigmoid=False)
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])
    g = jax.grad(lambda t: jnp.sum(P.to_valid_rgb(t, decorrelate=False, sigmoid=False)))(t)
    np.testing.assert_allclose(g, np.ones((1, 3)))


@pytest.mark.parametrize('name', ['lucid', 'pixel-rgb'])
def test_jit_and_vmap_equal_plain(name):
    param = ALL[name]
    keys = jax.random.split(KEY, 3)
    plain = [param.to_image(param.init(k, (12, 12, 3))) for k in keys]
    batched = jax.jit(jax.vmap(lambda k: param.to_image(param.init(k, (12, 12, 3)))))(keys)
    np.testing.assert_allclose(batched, np.stack(plain), atol=1e-6)


def test_decorrelate_needs_three_channels():
    with pytest.raises(ValueError, match='3 channels'):
        P.image().init(KEY, (8, 8, 4))
    assert P.image(decorrelate=False).to_image(P.image(decorrelate=False).init(KEY, (8, 8, 4))).shape == (8, 8, 4)
