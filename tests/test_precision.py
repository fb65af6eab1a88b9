"""The bf16 path (``dtype='bfloat16'``): it runs, the objective goes up, and its images stay near fp32's.

Measured on the tiny model (32x32, 10 steps, block3_conv2, 8 filters, same key): mean |bf16 - fp32|
about 1.1 on RGB 0..255 (max 33 on a few outlier pixels), final objectives within 10% (within 2% for all
but the weakest filter). The tolerances below leave a margin of about 3x.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.errors import JaxvisError
from jaxvis.visualize import preset, visualize_filters

MEAN_ATOL = 3.0    # mean absolute pixel difference, RGB 0..255
LOSS_RTOL = 0.3    # final objective, relative, filters alive in fp32


@pytest.fixture(scope='module')
def pair():
    from conftest import random_params
    from jaxvis.models.vgg import TINY_BLOCKS
    params = random_params(TINY_BLOCKS, seed=3)
    kw = dict(model='tiny', size=32, key=jax.random.key(7))
    f32 = visualize_filters(params, 'block3_conv2', range(8), preset('seed', steps=10), **kw)
    bf16 = visualize_filters(params, 'block3_conv2', range(8), preset('seed', steps=10, dtype='bfloat16'), **kw)
    return f32, bf16


def test_bf16_runs_in_bf16(pair):
    _, bf = pair
    assert bf.images.dtype == np.float32 and bf.config.dtype == 'bfloat16'
    h = bf.history
    # the objective is a mean of bf16 activations: every value is a bf16 number (fp32's are not)
    np.testing.assert_array_equal(h, np.asarray(jnp.asarray(h, jnp.bfloat16).astype(jnp.float32)))
    f32_h = pair[0].history
    assert not np.array_equal(f32_h, np.asarray(jnp.asarray(f32_h, jnp.bfloat16).astype(jnp.float32)))


def test_bf16_objective_goes_up(pair):
    _, bf = pair
    live = bf.history[0] > 0
    assert live.sum() >= 4
    assert np.all(bf.history[-1][live] > bf.history[0][live])
    assert np.all(bf.losses[live] > bf.history[0][live])


def test_bf16_close_to_fp32(pair):
    f32, bf = pair
    assert np.abs(bf.images - f32.images).mean() < MEAN_ATOL
    live = f32.losses > 0
    np.testing.assert_allclose(bf.losses[live], f32.losses[live], rtol=LOSS_RTOL)
    np.testing.assert_array_equal(bf.dead, f32.dead)


def test_bad_dtype():
    with pytest.raises(JaxvisError, match='dtype'):
        preset('seed', dtype='float16')


def test_a_bf16_step_is_compiled_with_bf16_options(monkeypatch):
    """The engine's step asks for bf16's compiler options (YNNPACK's dots: the AMX path), float32's for fp32."""
    from conftest import random_params
    from jaxvis.backend import xla
    from jaxvis.models.vgg import TINY_BLOCKS
    from jaxvis.visualize import engine
    real, asked = xla.compiler_options, []
    monkeypatch.setattr(xla, 'compiler_options',
                        lambda *a, **kw: asked.append(a[1:] or (kw.get('dtype'),)) or real(*a, **kw))
    engine._compiled.cache_clear()
    params = random_params(TINY_BLOCKS, seed=3)
    for dtype in ('bfloat16', 'float32'):
        asked.clear()
        visualize_filters(params, 'block2_conv1', range(2), preset('seed', steps=2, dtype=dtype), model='tiny',
                          size=32, key=jax.random.key(1))
        assert (dtype,) in asked and all(a in ((dtype,), ('float32',), (None,)) for a in asked)
    engine._compiled.cache_clear()
