"""Lucid's transformation robustness: pad, crop jitter, scale, rotate, standard_transforms.

Exact small arrays; each random transform run plain, under jit and under vmap (dm_pix's pattern).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import transforms as T

KEY = jax.random.key(0)


def _img(h=6, w=6, c=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((h, w, c)), jnp.float32)


def test_pad_constant_exact():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[..., None]
    out = T.pad(1, mode='constant', value=0.5)(KEY, x)[..., 0]
    np.testing.assert_array_equal(out, [[.5, .5, .5, .5], [.5, 1, 2, .5], [.5, 3, 4, .5], [.5, .5, .5, .5]])


def test_pad_reflect_exact():
    x = jnp.asarray([[1.0, 2.0, 3.0]])[..., None]
    out = T.pad(1)(KEY, jnp.concatenate([x, x + 3, x + 6], axis=0))[..., 0]  # rows 1..3, 4..6, 7..9
    np.testing.assert_array_equal(out[0], [5, 4, 5, 6, 5])
    np.testing.assert_array_equal(out[:, 0], [5, 2, 5, 8, 5])
    assert out.shape == (5, 5)


def test_crop_jitter_is_a_crop_and_covers_all_offsets():
    x = _img(8, 8, 1)
    crop = T.crop_jitter(3)
    seen = set()
    for i in range(60):
        out = crop(jax.random.key(i), x)
        assert out.shape == (5, 5, 1)
        hits = [(dy, dx) for dy in range(4) for dx in range(4) if np.array_equal(out, x[dy:dy + 5, dx:dx + 5])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 10  # offsets 0..3 in both axes
    assert T.crop_jitter(0)(KEY, x) is x


def test_scale_one_and_rotate_zero_are_identity():
    x = _img(7, 5, 3)
    np.testing.assert_array_equal(T.scale(x, 1.0), x)
    np.testing.assert_array_equal(T.rotate(x, 0.0), x)


@pytest.mark.parametrize('k', [1, 2, 3])
def test_rotate_multiples_of_90_equal_rot90(k):
    x = _img(6, 6, 2, seed=k)
    np.testing.assert_allclose(T.rotate(x, 90.0 * k), np.rot90(np.asarray(x), k=k, axes=(0, 1)), atol=1e-5)


def test_rotate_is_counter_clockwise():
    x = jnp.zeros((5, 5, 1)).at[0, 2, 0].set(1.0)  # top middle
    out = T.rotate(x, 90.0)
    assert float(out[2, 0, 0]) == pytest.approx(1.0, abs=1e-5)  # -> left middle


def test_scale_zooms_about_the_centre():
    x = jnp.asarray(np.arange(25, dtype=np.float32).reshape(5, 5, 1))
    out = T.scale(x, 2.0)[..., 0]
    assert float(out[2, 2]) == 12.0          # the centre stays
    assert float(out[2, 0]) == pytest.approx(11.0)  # (2, 0) reads (2, 1): content doubled in size
    assert float(out[0, 0]) == pytest.approx(6.0)
    np.testing.assert_allclose(T.scale(x, 0.5, mode='constant', cval=-1.0)[0, 0, 0], -1.0)  # outside: cval


def test_rotate_fill_and_range():
    x = jnp.ones((9, 9, 3))
    out = T.rotate(x, 45.0)
    assert float(out[0, 0, 0]) == 0.0 and float(out[4, 4, 0]) == pytest.approx(1.0)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6


@pytest.mark.parametrize('make', [lambda: T.random_scale(), lambda: T.random_rotate(), lambda: T.crop_jitter(2),
                                  lambda: T.pad(2, mode='constant'), T.standard_transforms])
def test_jit_and_vmap_equal_plain(make):
    t = make()
    keys = jax.random.split(KEY, 4)
    xs = jnp.stack([_img(20, 20, 3, seed=i) for i in range(4)])
    plain = np.stack([t(k, x) for k, x in zip(keys, xs)])
    np.testing.assert_allclose(jax.jit(t)(keys[0], xs[0]), plain[0], atol=1e-6)
    np.testing.assert_allclose(jax.vmap(t)(keys, xs), plain, atol=1e-6)


def test_random_choices_come_from_the_tables():
    x = jnp.zeros((9, 9, 1)).at[4, 6, 0].set(1.0)
    outs = {tuple(np.round(np.asarray(T.random_rotate((0.0, 90.0))(jax.random.key(i), x))[..., 0].ravel(), 4))
            for i in range(20)}
    assert len(outs) == 2
    assert len(T.LUCID_SCALES) == 11 and T.LUCID_SCALES[0] == pytest.approx(0.9) and T.LUCID_SCALES[-1] == pytest.approx(1.1)
    assert min(T.LUCID_ANGLES) == -10 and max(T.LUCID_ANGLES) == 10 and T.LUCID_ANGLES.count(0.0) == 6


def test_standard_transforms_shape_range_and_gradient():
    t = T.standard_transforms()
    x = _img(32, 32, 3)
    out = t(KEY, x)
    assert out.shape == (44, 44, 3)  # pad 24, crops 8 and 4
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6
    assert not np.allclose(t(jax.random.key(1), x), out)
    g = jax.grad(lambda x: jnp.sum(t(KEY, x) ** 2))(x)
    assert float(jnp.abs(g).sum()) > 0  # differentiable: the gradient reaches the image


def _bilinear_loop(x: np.ndarray, side: int) -> np.ndarray:
    """Corner-aligned bilinear resize, one output pixel at a time (the formula, read plainly)."""
    h, w = x.shape[:2]
    out = np.zeros((side, side) + x.shape[2:], np.float64)
    for i in range(side):
        for j in range(side):
            y, z = i * (h - 1) / (side - 1), j * (w - 1) / (side - 1)
            y0, z0 = int(np.floor(y)), int(np.floor(z))
            y1, z1 = min(y0 + 1, h - 1), min(z0 + 1, w - 1)
            fy, fz = y - y0, z - z0
            out[i, j] = ((1 - fy) * (1 - fz) * x[y0, z0] + (1 - fy) * fz * x[y0, z1]
                         + fy * (1 - fz) * x[y1, z0] + fy * fz * x[y1, z1])
    return out


def test_fixed_size_is_corner_aligned_bilinear():
    """Lucent's fixed_image_size (torch Upsample, bilinear, align_corners=True): exact on a 2x2, and the
    plain per-pixel formula on shrinking and enlarging a non-square image."""
    x = jnp.asarray([[0.0, 2.0], [4.0, 6.0]])[..., None]
    np.testing.assert_allclose(T.fixed_size(3)(KEY, x)[..., 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]], atol=1e-6)
    for h, w, side in ((14, 11, 8), (5, 7, 9), (20, 20, 20)):
        img = _img(h, w, 3, seed=h)
        got = jax.jit(T.fixed_size(side))(KEY, img)
        assert got.shape == (side, side, 3)
        np.testing.assert_allclose(got, _bilinear_loop(np.asarray(img, np.float64), side), atol=1e-5)
    assert T.fixed_size(20)(KEY, img) is img
    grad = jax.grad(lambda a: T.fixed_size(8)(KEY, a).sum())(_img(14, 14, 1))
    np.testing.assert_allclose(float(grad.sum()), 64.0, rtol=1e-5)   # each output pixel's weights sum to 1
    with pytest.raises(Exception, match='fixed size'):
        T.fixed_size(0)
