"""The parameterized render path: redirected ReLU, the lucid preset, dead-filter recovery, diverse batches."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import filters as F
from jaxvis import metrics as M
from jaxvis import objectives as O
from jaxvis import param as P
from jaxvis import render
from jaxvis.config import FilterConfig, preset
from jaxvis.errors import JaxvisError
from jaxvis.models import get_model

SPEC = get_model('tiny')
LAYER = 'block3_conv1'


# ---------------------------------------------------------------- redirected ReLU

def _grads(x, g, active):
    _, vjp = jax.vjp(lambda x: render.redirected_relu(x, jnp.float32(active)), x)
    return vjp(g)[0]


def test_redirected_relu_forward_is_relu_bit_for_bit():
    x = jax.random.normal(jax.random.key(0), (3, 5, 5, 4)) * 3
    np.testing.assert_array_equal(render.redirected_relu(x, jnp.float32(1.0)), jax.nn.relu(x))


def test_redirected_relu_gradient():
    x = jnp.asarray([[-1.0, 2.0, -3.0], [-1.0, -2.0, -0.5]])  # row 0 fires, row 1 is all blocked
    g = jnp.asarray([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]])
    relu_g = np.asarray(jax.vjp(jax.nn.relu, x)[1](g)[0])
    np.testing.assert_array_equal(_grads(x, g, 0.0), relu_g)  # off: relu's gradient
    on = np.asarray(_grads(x, g, 1.0))
    np.testing.assert_array_equal(on[0], relu_g[0])  # an entry with gradient keeps relu's
    np.testing.assert_array_equal(on[1], [1.0, 0.0, 1.0])  # blocked entry: only the upward push passes
    assert relu_g[1].sum() == 0


def test_vgg_relu_attribute_keeps_outputs_identical(tiny_params):
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)) * 255 - 120
    p = {k: v for k, v in tiny_params.items() if k.startswith(('block1', 'block2', 'block3_conv1'))}
    plain = SPEC.make(LAYER).apply({'params': p}, x)
    swapped = SPEC.make(LAYER, relu=lambda z: render.redirected_relu(z, jnp.float32(1.0))).apply({'params': p}, x)
    for name in plain:
        np.testing.assert_array_equal(plain[name], swapped[name])


def test_make_apply_rejects_models_without_relu_option():
    spec = dataclasses.replace(SPEC, name='norelu', make=lambda layer: SPEC.make(layer))
    with pytest.raises(JaxvisError, match='relu'):
        render.make_apply(spec, LAYER, redirect_steps=4)


# ---------------------------------------------------------------- the step

def test_param_step_with_pixels_equals_the_engine_step(tiny_params):
    """Redirection switched off by t >= redirect steps: the same update as filters.make_step."""
    p = F.needed_params(SPEC, tiny_params, LAYER)
    key = jax.random.key(3)
    x = F.init_image(preset('seed'), key, 32)
    for cfg in (preset('seed', decay=0.1, jitter=2), preset('yosinski1')):
        a = F.make_step(SPEC, LAYER, cfg)(p, x, (), jnp.int32(1), key, jnp.int32(20))
        b = render.make_param_step(SPEC, LAYER, dataclasses.replace(cfg, redirect_relu_steps=4))(
            p, x, (), jnp.int32(1), key, jnp.int32(20))
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-3)
        assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-6)


def test_lucid_preset_objective_goes_up(tiny_params):
    r = F.visualize_filters(tiny_params, 'block2_conv1', [0, 3], model='tiny', size=32, steps=10, preset='lucid')
    assert r.history.shape == (10, 2)
    assert np.all(r.losses > 2 * r.history[0] + 1e-3)
    assert r.images.shape == (2, 32, 32, 3) and r.images.min() >= 0 and r.images.max() <= 255
    assert r.config.param is not None and not r.dead.any()


def test_lucid_preset_definition():
    cfg = preset('lucid')
    assert cfg.steps == 256 and cfg.redirect_relu_steps == 16 and cfg.normalize == 'none'
    assert 'fourier' in cfg.param.name and 'decorrelate=True' in cfg.param.name
    json.dumps(cfg.to_dict())  # manifests stay JSON
    with pytest.raises(JaxvisError, match='regularizers'):
        preset('lucid', decay=0.1)


def test_param_results_independent_of_batch_mates(tiny_params):
    kw = dict(model='tiny', size=32, steps=4, preset='lucid')
    alone = F.visualize_filters(tiny_params, LAYER, [5], **kw)
    mates = F.visualize_filters(tiny_params, LAYER, [1, 5, 2], **kw)
    np.testing.assert_allclose(alone.images[0], mates.images[1], atol=0.05)
    np.testing.assert_allclose(alone.losses[0], mates.losses[1], rtol=1e-4)


def test_param_path_snapshots_and_init(tiny_params):
    start = np.random.default_rng(0).uniform(30, 220, (32, 32, 3)).astype(np.float32)
    r = F.visualize_filters(tiny_params, LAYER, [0, 1], model='tiny', size=32, steps=2, preset='lucid',
                            init=start, snapshot_every=1)
    assert r.snapshots.shape == (3, 2, 32, 32, 3) and r.snapshot_steps == (0, 1, 2)
    np.testing.assert_allclose(r.snapshots[0, 0], start, atol=0.1)  # the param starts at the given image


def test_objective_hook(tiny_params):
    cfg = preset('lucid', steps=3, objective=O.neuron)
    r = F.visualize_filters(tiny_params, LAYER, [2], model='tiny', size=32, config=cfg)
    x = jnp.asarray(SPEC.preprocess(r.images))
    acts = SPEC.make(LAYER).apply({'params': F.needed_params(SPEC, tiny_params, LAYER)}, x)
    assert float(r.losses[0]) == pytest.approx(float(O.neuron(LAYER)(acts, 2)), rel=1e-4)


# ---------------------------------------------------------------- dead filters

def _dead_filter_params(tiny_params, margin=5.0):
    """Filter 0 of block1_conv1 made dead on the seed preset's start image (bias below its largest response)."""
    p = {k: dict(v) for k, v in tiny_params.items()}
    x = F.init_image(preset('seed'), F.filter_keys(jax.random.key(0), 'block1_conv1', [0])[0], 32)
    pre = SPEC.make('block1_conv1').apply({'params': {'block1_conv1': {**p['block1_conv1'],
                                                                      'bias': np.zeros(4, np.float32)}}},
                                          x[None], )
    # relu(pre + b) = 0 everywhere iff b <= -max(pre)
    top = float(jnp.max(pre['block1_conv1'][..., 0]))
    bias = np.asarray(p['block1_conv1']['bias']).copy()
    bias[0] = -top - margin
    p['block1_conv1']['bias'] = bias
    return p


def test_dead_filter_recovers_with_redirected_relu(tiny_params):
    p = _dead_filter_params(tiny_params)
    kw = dict(model='tiny', size=32, steps=20, preset='seed')
    dead = F.visualize_filters(p, 'block1_conv1', [0], **kw)
    assert dead.dead[0] and np.all(dead.history == 0)  # no gradient: the image never moves
    alive = F.visualize_filters(p, 'block1_conv1', [0], redirect_relu_steps=16, **kw)
    assert not alive.dead[0] and alive.losses[0] > 0


# ---------------------------------------------------------------- diverse batches

def test_visualize_diverse(tiny_params):
    kw = dict(model='tiny', size=32, steps=15, n=3)
    plain = render.visualize_diverse(tiny_params, LAYER, 4, weight=0.0, **kw)
    div = render.visualize_diverse(tiny_params, LAYER, 4, weight=10.0, **kw)
    assert div.images.shape == (3, 32, 32, 3) and div.activation.shape == (3,) and div.history.shape == (15,)
    assert div.images.min() >= 0 and div.images.max() <= 255
    assert div.diversity > plain.diversity  # the diversity term makes the batch's Gram matrices differ
    assert np.all(plain.activation > 0)
    with pytest.raises(JaxvisError, match='n >= 2'):
        render.visualize_diverse(tiny_params, LAYER, 4, model='tiny', size=32, steps=1, n=1)
    with pytest.raises(JaxvisError, match='param'):
        render.visualize_diverse(tiny_params, LAYER, 4, model='tiny', size=32, steps=1, preset='seed')
