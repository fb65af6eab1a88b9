"""jaxvis.image_ops and jaxvis.transforms against plain numpy, on small exact arrays.

The references below are written independently of the library: float64 numpy, ``np.pad`` borders
('symmetric' is scipy.ndimage's 'reflect', 'reflect' is OpenCV's default BORDER_REFLECT_101).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import image_ops, transforms
from jaxvis.display import grid_shape
from jaxvis.errors import JaxvisError


def ref_gaussian_taps(sigma, radius=None):
    radius = int(4 * sigma + 0.5) if radius is None else radius
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-t * t / (2 * sigma * sigma))
    return w / w.sum()


def ref_separable(x, taps, mode):
    """Correlate ``x`` [H, W, C] with ``taps`` along H then W, float64, ``np.pad`` borders."""
    x = np.asarray(x, np.float64)
    r = (len(taps) - 1) // 2
    h, w = x.shape[:2]
    xp = np.pad(x, ((r, r), (r, r), (0, 0)), mode=mode)
    rows = np.zeros((h, w + 2 * r, x.shape[2]))
    for i, t in enumerate(taps):
        rows += t * xp[i:i + h]
    out = np.zeros_like(x)
    for j, t in enumerate(taps):
        out += t * rows[:, j:j + w]
    return out


def ref_box3_reflect101(x):
    """``cv2.blur(x, (3, 3))`` with its default border (reflect-101): an explicit 9-tap mean."""
    x = np.asarray(x, np.float64)
    h, w = x.shape[:2]
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode='reflect')
    return sum(xp[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


# ------------------------------------------------------------------ gaussian kernel

@pytest.mark.parametrize('sigma,radius', [(0.3, 1), (0.5, 2), (1.0, 4), (1.2, 5), (2.0, 8)])
def test_gaussian_kernel1d_default_radius_sum_symmetry(sigma, radius):
    k = image_ops.gaussian_kernel1d(sigma)
    assert radius == int(4 * sigma + 0.5)
    assert k.shape == (2 * radius + 1,) and k.dtype == np.float32
    np.testing.assert_allclose(k.sum(dtype=np.float64), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(k, k[::-1])
    assert np.all(np.diff(k[:radius + 1]) > 0)  # rises to the centre
    np.testing.assert_allclose(k, ref_gaussian_taps(sigma), rtol=1e-6)


def test_gaussian_kernel1d_explicit_radius_and_bad_sigma():
    k = image_ops.gaussian_kernel1d(1.0, radius=1)
    assert k.shape == (3,)
    np.testing.assert_allclose(k, ref_gaussian_taps(1.0, 1), rtol=1e-6)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            image_ops.gaussian_kernel1d(bad)


# ------------------------------------------------------------------ blurs

def test_gaussian_blur_of_an_impulse_is_the_outer_product_of_taps():
    x = np.zeros((9, 9, 1), np.float32)
    x[4, 4] = 1.0
    out = np.asarray(jax.jit(image_ops.gaussian_blur, static_argnums=1)(jnp.asarray(x), 1.0))  # radius 4 just fits
    k = ref_gaussian_taps(1.0)
    np.testing.assert_allclose(out[..., 0], np.outer(k, k), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize('shape,sigma,radius', [((6, 7, 3), 1.0, None), ((5, 5, 2), 0.5, None),
                                                ((8, 6, 3), 1.5, 2), ((3, 4, 1), 1.0, None)])
def test_gaussian_blur_equals_numpy_scipy_reflect(shape, sigma, radius):
    # (3, 4) with radius 4: the border is reflected more than once, as scipy's 'reflect' does.
    x = rand(shape, seed=1)
    out = jax.jit(lambda x: image_ops.gaussian_blur(x, sigma, radius=radius))(jnp.asarray(x))
    assert out.shape == x.shape and out.dtype == jnp.float32
    ref = ref_separable(x, ref_gaussian_taps(sigma, radius), 'symmetric')
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)


def test_gaussian_blur_border_is_not_zero_or_edge_padding():
    x = rand((6, 6, 1), seed=2)
    out = np.asarray(jax.jit(image_ops.gaussian_blur, static_argnums=1)(jnp.asarray(x), 1.0))
    for mode in ('constant', 'edge', 'reflect'):
        other = ref_separable(x, ref_gaussian_taps(1.0), mode)
        assert np.abs(out - other).max() > 1e-3, mode


def test_gaussian_blur_batched_leading_axes():
    x = rand((2, 5, 6, 3), seed=3)
    out = np.asarray(jax.jit(image_ops.gaussian_blur, static_argnums=1)(jnp.asarray(x), 0.7))
    for i in range(2):
        np.testing.assert_allclose(out[i], ref_separable(x[i], ref_gaussian_taps(0.7), 'symmetric'),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('blur', [lambda x: image_ops.gaussian_blur(x, 1.3),
                                  lambda x: image_ops.box_blur(x, 3),
                                  lambda x: image_ops.box_blur(x, 5)])
def test_blur_leaves_a_constant_image_unchanged(blur):
    x = np.full((7, 9, 3), 117.25, np.float32)
    np.testing.assert_allclose(np.asarray(jax.jit(blur)(jnp.asarray(x))), x, rtol=2e-6)


def test_box_blur_equals_cv2_blur_reflect101():
    x = rand((5, 6, 3), seed=4, lo=-100, hi=100)
    out = jax.jit(image_ops.box_blur, static_argnums=1)(jnp.asarray(x), 3)
    np.testing.assert_allclose(np.asarray(out), ref_box3_reflect101(x), rtol=1e-5, atol=1e-4)
    # and not scipy's 'reflect' (which repeats the edge pixel)
    sym = ref_separable(x, np.full(3, 1 / 3), 'symmetric')
    assert np.abs(np.asarray(out) - sym).max() > 1e-2


def test_box_blur_exact_small_array():
    x = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    # reflect-101 pad of [[0,1,2],[3,4,5],[6,7,8]]: corner (0,0) window is 4 1 4 / 3 0 3 / 4 1 4 -> 24/9
    out = np.asarray(jax.jit(image_ops.box_blur, static_argnums=1)(jnp.asarray(x), 3))[..., 0]
    np.testing.assert_allclose(out[0, 0], 24 / 9, rtol=1e-6)
    np.testing.assert_allclose(out[1, 1], 4.0, rtol=1e-6)
    np.testing.assert_allclose(out, ref_box3_reflect101(x)[..., 0], rtol=1e-6)


def test_box_kernel_rejects_even_or_zero_size():
    for bad in (0, 2, 4):
        with pytest.raises(ValueError):
            image_ops.box_kernel1d(bad)


# ------------------------------------------------------------------ roll2d

@pytest.mark.parametrize('dy,dx', [(0, 0), (1, 2), (-3, 1), (7, -9), (-5, -5)])
def test_roll2d_equals_np_roll(dy, dx):
    x = rand((5, 6, 3), seed=5)
    ref = np.roll(x, (dy, dx), axis=(0, 1))
    np.testing.assert_array_equal(np.asarray(image_ops.roll2d(jnp.asarray(x), dy, dx)), ref)
    traced = jax.jit(image_ops.roll2d)(jnp.asarray(x), jnp.int32(dy), jnp.int32(dx))
    np.testing.assert_array_equal(np.asarray(traced), ref)


def test_roll2d_batched_rolls_spatial_axes_only():
    x = rand((2, 4, 5, 3), seed=6)
    np.testing.assert_array_equal(np.asarray(image_ops.roll2d(jnp.asarray(x), 1, -2)),
                                  np.roll(x, (1, -2), axis=(1, 2)))


# ------------------------------------------------------------------ percentile_mask

def test_percentile_mask_20th_of_100_distinct_values_is_exactly_the_20_smallest():
    v = np.random.default_rng(7).permutation(100).astype(np.float32) * 0.37 - 11.0
    mask = np.asarray(image_ops.percentile_mask(jnp.asarray(v), 20.0))
    assert mask.sum() == 20
    np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(np.argsort(v)[:20]))


@pytest.mark.parametrize('n,pct', [(37, 33.0), (10, 50.0), (64, 90.0), (100, 1.0), (12, 0.0)])
def test_percentile_mask_count_matches_docstring(n, pct):
    v = np.random.default_rng(n).permutation(n).astype(np.float32).reshape(-1, 1) + 0.5
    mask = np.asarray(image_ops.percentile_mask(jnp.asarray(v), pct))
    expect = math.ceil(pct / 100 * (n - 1))
    assert mask.sum() == expect
    assert mask.shape == v.shape
    assert np.all(v[mask] < v[~mask].min())


# ------------------------------------------------------------------ grid_shape

@pytest.mark.parametrize('n,shape', [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)),
                                     (7, (3, 3)), (9, (3, 3)), (10, (3, 4)), (16, (4, 4)), (17, (4, 5)),
                                     (64, (8, 8)), (200, (14, 15))])
def test_grid_shape(n, shape):
    rows, cols = grid_shape(n)
    assert (rows, cols) == shape
    assert rows * cols >= n and (rows - 1) * cols < n and cols >= rows


# ------------------------------------------------------------------ transforms.jitter

def find_shift(x, y, k):
    """The (dy, dx) in [-k, k]^2 with np.roll(x, (dy, dx)) == y (x has distinct values)."""
    hits = [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)
            if np.array_equal(np.roll(x, (dy, dx), axis=(0, 1)), y)]
    assert len(hits) == 1, hits
    return hits[0]


def distinct_image(h=9, w=10):
    return np.random.default_rng(8).permutation(h * w * 3).astype(np.float32).reshape(h, w, 3)


def test_jitter_is_a_roll_within_range_and_covers_the_ends():
    x = distinct_image()
    jit = jax.jit(transforms.jitter(2))
    shifts = set()
    for i in range(120):
        y = np.asarray(jit(jax.random.key(i), jnp.asarray(x)))
        shifts.add(find_shift(x, y, 2))
    dys, dxs = {s[0] for s in shifts}, {s[1] for s in shifts}
    assert dys == set(range(-2, 3)) and dxs == set(range(-2, 3))  # both ends inclusive (P(miss) < 1e-10)


def test_jitter_same_key_same_output_and_keys_matter():
    x = jnp.asarray(distinct_image())
    jit = transforms.jitter(3)
    a = np.asarray(jit(jax.random.key(5), x))
    np.testing.assert_array_equal(a, np.asarray(jit(jax.random.key(5), x)))
    jitted = jax.jit(jit)
    np.testing.assert_array_equal(a, np.asarray(jitted(jax.random.key(5), x)))
    outs = {np.asarray(jitted(jax.random.key(i), x)).tobytes() for i in range(10)}
    assert len(outs) > 1


def test_jitter_zero_is_identity_and_bad_shifts_are_refused():
    x = jnp.asarray(distinct_image())
    np.testing.assert_array_equal(np.asarray(transforms.jitter(0)(jax.random.key(1), x)), np.asarray(x))
    assert transforms.jitter(0) is transforms.identity()
    for bad in (-4, 100000, 2.5):
        with pytest.raises(JaxvisError, match='jitter'):
            transforms.jitter(bad)


def test_jitter_vmap_with_different_keys_equals_loop():
    xs = jnp.asarray(np.stack([distinct_image() + i for i in range(6)]))
    keys = jax.random.split(jax.random.key(3), 6)
    jit = transforms.jitter(2)
    batched = np.asarray(jax.vmap(jit)(keys, xs))
    looped = np.stack([np.asarray(jit(keys[i], xs[i])) for i in range(3)])
    np.testing.assert_array_equal(batched[:3], looped)
    jitted = jax.jit(jit)
    np.testing.assert_array_equal(batched, np.stack([np.asarray(jitted(keys[i], xs[i])) for i in range(6)]))


def test_jitter_gradient_is_rolled_back():
    x = jnp.asarray(distinct_image())
    w = jnp.asarray(rand(x.shape, seed=9))
    key = jax.random.key(11)
    jit = transforms.jitter(3)
    dy, dx = find_shift(np.asarray(x), np.asarray(jit(key, x)), 3)
    g = jax.grad(lambda x: jnp.sum(w * jit(key, x)))(x)
    np.testing.assert_array_equal(np.asarray(g), np.roll(np.asarray(w), (-dy, -dx), axis=(0, 1)))


def test_compose_applies_each_transform_with_its_own_key():
    x = distinct_image()
    t = jax.jit(transforms.compose(transforms.jitter(1), transforms.jitter(1)))
    seen = set()
    for i in range(40):
        y = np.asarray(t(jax.random.key(i), jnp.asarray(x)))
        seen.add(find_shift(x, y, 2))
    assert any(abs(dy) == 2 or abs(dx) == 2 for dy, dx in seen)  # two independent shifts add up
