"""Quality metrics on constructed cases, and measure() on a tiny-model result."""
from __future__ import annotations

import numpy as np
import pytest

from jaxvis import metrics as M
from jaxvis.models import forward, get_model
from jaxvis.visualize import preset, visualize_filters


def _wave(fy, fx, n=32):
    y, x = np.mgrid[:n, :n]
    return np.repeat(np.cos(2 * np.pi * (fy * y + fx * x))[..., None], 3, -1).astype(np.float32)


def test_hf_share_constructed():
    n = 32
    checker = ((np.indices((n, n)).sum(0) % 2) * 255.0)[..., None].repeat(3, -1)
    stripes = ((np.arange(n) % 2)[None, :].repeat(n, 0) * 1.0)[..., None].repeat(3, -1)
    ramp = np.linspace(0, 1, n)[:, None, None].repeat(n, 1).repeat(3, 2)
    shares = M.hf_share(np.stack([np.full((n, n, 3), 0.7), checker, stripes, ramp]))
    assert shares.shape == (4,)
    np.testing.assert_allclose(shares[:3], [0.0, 1.0, 1.0], atol=1e-6)
    assert float(shares[3]) < 0.01  # a smooth ramp: the window hides the edge-to-edge jump
    # the cutoff is at half the Nyquist radius, 0.25 cycles/pixel (the Hann window spreads a wave by one bin)
    assert float(M.hf_share(_wave(0, 6 / 32))) == pytest.approx(0.0, abs=1e-6)  # 0.1875
    assert float(M.hf_share(_wave(0, 10 / 32))) == pytest.approx(1.0, abs=1e-6)  # 0.3125
    assert float(M.hf_share(_wave(7 / 32, 7 / 32))) == pytest.approx(1.0, abs=1e-6)  # radius 0.309
    assert float(M.hf_share(_wave(0, 10 / 32), cutoff=0.8)) == pytest.approx(0.0, abs=1e-6)


def test_hf_share_of_noise_is_about_the_area_share():
    noise = np.random.default_rng(0).standard_normal((64, 64, 3))
    # white noise spreads energy evenly: the share is the area outside radius 0.25 of the unit square
    assert float(M.hf_share(noise)) == pytest.approx(1 - np.pi * 0.25 ** 2, abs=0.03)


def test_activation_and_selectivity_constructed():
    means = np.asarray([[1.0, 1.0, 1.0, 4.0], [2.0, 2.0, 2.0, 2.0], [0.0, 3.0, 0.0, 0.0]], np.float32)
    f = np.asarray([3, 0, 1])
    np.testing.assert_allclose(M.activation(means, f), [4.0, 2.0, 3.0])
    sel = M.selectivity(means, f)
    np.testing.assert_allclose(sel[:2], [4.0, 1.0], rtol=1e-6)
    assert float(sel[2]) == pytest.approx(3.0 / 1e-6)  # the rest of the layer is silent: floored denominator
    # signed outputs (a linear layer): the others' mean magnitude, not their mean (-2/3 here)
    signed = M.selectivity(np.asarray([[-1.0, 1.0, -2.0, 5.0]], np.float32), np.asarray([3]))
    assert float(signed[0]) == pytest.approx(5.0 / (4.0 / 3.0), rel=1e-6)


def test_diversity_metrics_constructed():
    one = np.random.default_rng(0).random((1, 5, 5, 4)).astype(np.float32)
    assert float(M.gram_diversity(np.repeat(one, 3, 0))) == pytest.approx(0.0, abs=1e-5)
    disjoint = np.zeros((2, 5, 5, 4), np.float32)
    disjoint[0, ..., :2], disjoint[1, ..., 2:] = one[0, ..., :2], one[0, ..., :2]
    assert float(M.gram_diversity(disjoint)) == pytest.approx(1.0, abs=1e-6)
    assert float(M.image_diversity(np.repeat(one, 2, 0))) == pytest.approx(0.0, abs=1e-5)
    assert float(M.image_diversity(np.concatenate([one, -one]))) == pytest.approx(2.0, abs=1e-5)
    noise = np.random.default_rng(1).random((4, 16, 16, 3))
    assert float(M.image_diversity(noise)) == pytest.approx(1.0, abs=0.1)


def test_dead_fraction():
    assert M.dead_fraction(np.asarray([0.0, -1.0, 2.0, 3.0])) == 0.5
    assert M.dead_fraction(np.asarray([1.0])) == 0.0


def test_channel_means_match_a_forward_pass(tiny_params):
    spec = get_model('tiny')
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    means = M.channel_means(tiny_params, 'block2_conv1', images, model='tiny', batch_size=2)
    p = {k: v for k, v in tiny_params.items() if k.startswith('block1') or k == 'block2_conv1'}
    acts = forward(spec, 'block2_conv1')(p, spec.preprocess(images))['block2_conv1']
    np.testing.assert_allclose(means, np.asarray(acts).mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)


def test_measure_a_result(tiny_params):
    r = visualize_filters(tiny_params, 'block2_conv1', [0, 2, 5], preset('seed', steps=3), model='tiny', size=32)
    # re-scoring the final (unclipped) images gives the engine's final objective
    means = M.channel_means(tiny_params, 'block2_conv1', r.images, model='tiny')
    np.testing.assert_allclose(M.activation(means, r.filters), r.losses, rtol=1e-4, atol=1e-3)
    m = M.measure(tiny_params, r, 'block2_conv1', model='tiny')
    assert set(m) == {'activation', 'selectivity', 'hf_share', 'dead_fraction'}
    assert m['activation'].shape == m['selectivity'].shape == m['hf_share'].shape == (3,)
    clipped = M.channel_means(tiny_params, 'block2_conv1', np.clip(r.images, 0, 255), model='tiny')
    np.testing.assert_allclose(m['activation'], M.activation(clipped, r.filters), rtol=1e-6)
    np.testing.assert_allclose(m['selectivity'], M.selectivity(clipped, r.filters), rtol=1e-6)
    assert m['dead_fraction'] == float(np.mean(r.dead))
