"""The shifted-slice depthwise convolution against XLA's grouped convolution (an independent
implementation), its gradient, and its independence of the batch."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvis.models.depthwise import depthwise_conv


def grouped(x, w, stride):
    return lax.conv_general_dilated(x, w, (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                    feature_group_count=x.shape[-1], precision='highest')


@pytest.mark.parametrize('side,kernel,stride', [(9, 3, 1), (9, 3, 2), (10, 5, 2), (7, 5, 1), (8, 3, 2), (6, 5, 2)])
def test_matches_grouped_convolution_and_its_gradient(side, kernel, stride):
    kx, kw = jax.random.split(jax.random.key(side * 10 + kernel + stride))
    x = jax.random.normal(kx, (2, side, side + 1, 5))
    w = jax.random.normal(kw, (kernel, kernel, 1, 5))
    out = depthwise_conv(x, w, stride)
    ref = grouped(x, w, stride)
    assert out.shape == ref.shape == (2, -(-side // stride), -(-(side + 1) // stride), 5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda x: jnp.sum(jnp.sin(depthwise_conv(x, w, stride))))(x)
    g_ref = jax.grad(lambda x: jnp.sum(jnp.sin(grouped(x, w, stride))))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)


def test_an_image_is_the_same_bytes_alone_and_in_a_batch():
    kx, kw = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (5, 16, 16, 8))
    w = jax.random.normal(kw, (5, 5, 1, 8))
    f = jax.jit(jax.grad(lambda x: jnp.sum(jnp.tanh(depthwise_conv(x, w, 2)))))
    alone = np.asarray(f(x[2:3]))
    batch = np.asarray(f(x))
    assert alone.tobytes() == batch[2:3].tobytes()
