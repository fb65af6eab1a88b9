"""Lucid's pieces on the tiny VGG: redirected ReLU (found in any traced function), the lucid preset,
dead-filter recovery, diverse images of one filter."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import objectives as O
from jaxvis import transforms as T
from jaxvis.errors import JaxvisError
from jaxvis.models import forward, get_model, params_up_to
from jaxvis.models.redirect import redirected_relu, with_redirected_relus
from jaxvis.visualize import preset, visualize_diverse, visualize_filters
from jaxvis.visualize.start import filter_keys, start_point
from jaxvis.visualize.step import make_step

SPEC = get_model('tiny')
LAYER = 'block3_conv1'


def run(params, layer, filters, name='lucid', **kw):
    engine = {k: kw.pop(k) for k in ('init', 'snapshot_every') if k in kw}
    return visualize_filters(params, layer, filters, preset(name, **kw), model='tiny', size=32, **engine)


# ---------------------------------------------------------------- redirected ReLU

def _grads(x, g, active):
    _, vjp = jax.vjp(lambda x: redirected_relu(x, jnp.float32(active)), x)
    return vjp(g)[0]


def test_redirected_relu_forward_is_relu_bit_for_bit():
    x = jax.random.normal(jax.random.key(0), (3, 5, 5, 4)) * 3
    np.testing.assert_array_equal(redirected_relu(x, jnp.float32(1.0)), jax.nn.relu(x))


def test_redirected_relu_gradient():
    x = jnp.asarray([[-1.0, 2.0, -3.0], [-1.0, -2.0, -0.5]])  # row 0 fires, row 1 is all blocked
    g = jnp.asarray([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]])
    relu_g = np.asarray(jax.vjp(jax.nn.relu, x)[1](g)[0])
    np.testing.assert_array_equal(_grads(x, g, 0.0), relu_g)  # off: relu's gradient
    on = np.asarray(_grads(x, g, 1.0))
    np.testing.assert_array_equal(on[0], relu_g[0])  # an entry with gradient keeps relu's
    np.testing.assert_array_equal(on[1], [1.0, 0.0, 1.0])  # blocked entry: only the upward push passes
    assert relu_g[1].sum() == 0


def test_redirection_finds_the_relus_of_any_function():
    """relu and relu6 inside jit, in a plain function: values bit for bit, gradients redirected only
    while active; a max(x, 0) written by hand is not a ReLU call and keeps its gradient."""
    w = jnp.asarray([[1.0, -2.0], [0.5, 1.0]])

    def f(p, x):
        h = jax.jit(jax.nn.relu)(x @ p)
        return {'a': h, 'b': jax.nn.relu6(h * 10 - 3), 'c': jnp.maximum(x @ p, 0.0)}

    g = with_redirected_relus(f)
    x = jnp.asarray([[-1.0, -1.0]])  # x @ w = [-1.5, 1.0]: unit 0 never fires
    for k in 'abc':
        np.testing.assert_array_equal(g(jnp.float32(1.0), w, x)[k], f(w, x)[k])
    grad = lambda fn, k: jax.grad(lambda x: fn(x)[k][0, 0])(x)
    assert np.all(np.asarray(grad(lambda x: f(w, x), 'a')) == 0)
    np.testing.assert_allclose(grad(lambda x: g(jnp.float32(1.0), w, x), 'a'), w[:, :1].T)
    assert np.all(np.asarray(grad(lambda x: g(jnp.float32(0.0), w, x), 'a')) == 0)
    assert np.all(np.asarray(grad(lambda x: g(jnp.float32(1.0), w, x), 'c')) == 0)


def test_redirection_inside_shard_map():
    """Under shard_map (the engine's path on several devices) relu's constant comes through pvary."""
    from jax.sharding import Mesh, PartitionSpec

    w = jnp.asarray([[1.0, -2.0], [0.5, 1.0]])
    g = with_redirected_relus(lambda w, x: {'a': jax.nn.relu(x @ w)})
    step = jax.vmap(jax.grad(lambda x, on: g(on, w, x)['a'][0, 0]), in_axes=(0, None))
    mesh = Mesh(np.asarray(jax.devices()[:1]), ('f',))
    sharded = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(PartitionSpec('f'), PartitionSpec()),
                                    out_specs=PartitionSpec('f')))
    x = -jnp.ones((2, 1, 2))
    np.testing.assert_array_equal(sharded(x, jnp.float32(1.0)), jax.jit(step)(x, jnp.float32(1.0)))
    assert np.all(np.asarray(sharded(x, jnp.float32(1.0))) != 0)


def test_redirected_forward_keeps_vgg_outputs_identical(tiny_params):
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)) * 255 - 120
    p = params_up_to(SPEC, tiny_params, LAYER)
    plain = forward(SPEC, LAYER)(p, x)
    redirected = forward(SPEC, LAYER, redirect=True)(p, x, jnp.float32(1.0))
    for name in plain:
        np.testing.assert_array_equal(plain[name], redirected[name])


# ---------------------------------------------------------------- the step

def test_redirection_off_equals_the_plain_step(tiny_params):
    """Redirection switched off by t >= redirect steps: the same update as without it."""
    p = params_up_to(SPEC, tiny_params, LAYER)
    key = jax.random.key(3)
    x = start_point(preset('seed'), key, 32)
    for cfg in (preset('seed', decay=0.1, jitter=2), preset('yosinski1')):
        a = jax.jit(make_step(SPEC, LAYER, cfg))(p, x, cfg.optimizer.init(x), jnp.int32(1), key, jnp.int32(20))
        redirected = preset(cfg.name, **({'decay': 0.1, 'jitter': 2} if cfg.name == 'seed' else {}),
                            redirect_relu_steps=4)
        b = jax.jit(make_step(SPEC, LAYER, redirected))(p, x, cfg.optimizer.init(x), jnp.int32(1), key,
                                                        jnp.int32(20))
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-3)
        assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-6)


def test_lucid_preset_objective_goes_up(tiny_params):
    r = run(tiny_params, 'block2_conv1', [0, 3], steps=10)
    assert r.history.shape == (10, 2)
    assert np.all(r.losses > 2 * r.history[0] + 1e-3)
    assert r.images.shape == (2, 32, 32, 3) and r.images.min() >= 0 and r.images.max() <= 255
    assert r.config.param.space == 'rgb01' and not r.dead.any()
    with pytest.raises(JaxvisError, match='regularizers'):
        preset('lucid', regularizer=preset('seed', decay=0.1).regularizer)


def test_param_results_independent_of_batch_mates(tiny_params):
    alone = run(tiny_params, LAYER, [5], steps=4)
    mates = run(tiny_params, LAYER, [1, 5, 2], steps=4)
    np.testing.assert_allclose(alone.images[0], mates.images[1], atol=0.05)
    np.testing.assert_allclose(alone.losses[0], mates.losses[1], rtol=1e-4)


def test_param_path_snapshots_and_init(tiny_params):
    start = np.random.default_rng(0).uniform(30, 220, (32, 32, 3)).astype(np.float32)
    r = run(tiny_params, LAYER, [0, 1], steps=2, init=start, snapshot_every=1)
    assert r.snapshots.shape == (3, 2, 32, 32, 3) and r.snapshot_steps == (0, 1, 2)
    np.testing.assert_allclose(r.snapshots[0, 0], start, atol=0.1)  # the param starts at the given image


def test_objective_hook(tiny_params):
    r = run(tiny_params, LAYER, [2], steps=3, objective=O.neuron)
    x = jnp.asarray(SPEC.preprocess(r.images))
    acts = forward(SPEC, LAYER)(params_up_to(SPEC, tiny_params, LAYER), x)
    assert float(r.losses[0]) == pytest.approx(float(O.neuron(LAYER)(acts, 2)), rel=1e-4)


# ---------------------------------------------------------------- dead filters

def _dead_filter_params(tiny_params, margin=5.0):
    """Filter 0 of block1_conv1 made dead on the seed preset's start image (bias below its largest response)."""
    p = {k: dict(v) for k, v in tiny_params.items()}
    x = start_point(preset('seed'), filter_keys(jax.random.key(0), 'block1_conv1', [0])[0], 32)
    unbiased = {'block1_conv1': {**p['block1_conv1'], 'bias': np.zeros(4, np.float32)}}
    pre = forward(SPEC, 'block1_conv1')(unbiased, x[None])
    # relu(pre + b) = 0 everywhere iff b <= -max(pre)
    top = float(jnp.max(pre['block1_conv1'][..., 0]))
    bias = np.asarray(p['block1_conv1']['bias']).copy()
    bias[0] = -top - margin
    p['block1_conv1']['bias'] = bias
    return p


def test_dead_filter_recovers_with_redirected_relu(tiny_params):
    p = _dead_filter_params(tiny_params)
    dead = run(p, 'block1_conv1', [0], 'seed', steps=20)
    assert dead.dead[0] and np.all(dead.history == 0)  # no gradient: the image never moves
    alive = run(p, 'block1_conv1', [0], 'seed', steps=20, redirect_relu_steps=16)
    assert not alive.dead[0] and alive.losses[0] > 0


def test_quality_restart_rule_keeps_a_dead_filter_the_redirect_is_raising(tiny_params):
    """lucid's rule: the redirect is on every step and only a stuck filter (gradient exactly 0) restarts."""
    p = _dead_filter_params(tiny_params, margin=1e4)     # dead for any image
    # no rescue: the filter stays dead for any image, so lucid's rescue rerun (no transforms) could not revive
    # it and each result would be the first run's bytes; it would only compile a second program per run
    kw = dict(steps=6, restarts=(2,), rescue=False)
    redirected = run(p, 'block1_conv1', [0], **kw)
    assert preset('lucid', steps=6).redirect_relu_steps == 6
    np.testing.assert_array_equal(redirected.images,
                                  run(p, 'block1_conv1', [0], steps=6, restarts=(), rescue=False).images)
    stuck = run(p, 'block1_conv1', [0], steps=6, restarts=(), redirect_relu_steps=0, rescue=False)
    assert np.all(redirected.history == 0) and not np.array_equal(redirected.images, stuck.images)  # it moved
    restarted = run(p, 'block1_conv1', [0], redirect_relu_steps=0, **kw)
    assert not np.array_equal(stuck.images, restarted.images)   # no gradient: restarted at step 2


def test_rescue_reruns_the_dead_filters_only(tiny_params):
    """A config's rescue reruns the filters it leaves dead: a revived one gets the rescue run's own bytes
    (images, history, snapshots), alone or among batch mates; the others keep the first run's bytes."""
    p = _dead_filter_params(tiny_params)
    plain = preset('seed', steps=20)
    revive = dataclasses.replace(plain, redirect_relu_steps=16)
    cfg = dataclasses.replace(plain, rescue=revive)
    kw = dict(model='tiny', size=32, snapshot_every=5)
    got = visualize_filters(p, 'block1_conv1', [1, 0, 2], cfg, **kw)
    first = visualize_filters(p, 'block1_conv1', [1, 0, 2], plain, **kw)
    alone = visualize_filters(p, 'block1_conv1', [0], revive, **kw)
    assert first.dead.tolist() == [False, True, False] and first.rescued is None
    assert got.rescued.tolist() == [False, True, False] and not got.dead.any()
    keep = [0, 2]
    np.testing.assert_array_equal(got.images[keep], first.images[keep])
    np.testing.assert_array_equal(got.history[:, keep], first.history[:, keep])
    np.testing.assert_array_equal(got.snapshots[:, keep], first.snapshots[:, keep])
    np.testing.assert_array_equal(got.images[1], alone.images[0])
    np.testing.assert_array_equal(got.history[:, 1], alone.history[:, 0])
    np.testing.assert_array_equal(got.snapshots[:, 1], alone.snapshots[:, 0])
    assert float(got.losses[1]) == float(alone.losses[0]) > 0
    # a rescue that cannot revive it: the first run's result, nothing rescued
    same = visualize_filters(p, 'block1_conv1', [1, 0, 2], dataclasses.replace(plain, rescue=plain), **kw)
    np.testing.assert_array_equal(same.images, first.images)
    assert same.dead.tolist() == first.dead.tolist() and not same.rescued.any()


def test_width_reaches_the_step_and_the_rescue_and_no_call_is_wider_than_the_job(tiny_params, monkeypatch):
    """``width=4``: the first run and the rescue rerun both compile groups of 4 (8 by default); a job of 3
    filters with ``batch_size=16`` compiles one call of 4 (8 at the default width), not 16."""
    from jaxvis.visualize import engine
    p = _dead_filter_params(tiny_params)
    plain = preset('seed', steps=20)
    cfg = dataclasses.replace(plain, rescue=dataclasses.replace(plain, redirect_relu_steps=16))
    seen = []
    real = engine._compiled.__wrapped__
    monkeypatch.setattr(engine, '_compiled', lambda *a: (seen.append(a[5:7]), real(*a))[1])  # (bs, group)
    for width, batch_size, calls in ((4, None, [(4, 4), (4, 4)]), (None, None, [(8, 8), (8, 8)]),
                                     (4, 16, [(4, 4), (4, 4)]), (None, 16, [(8, 8), (8, 8)])):
        seen.clear()
        got = visualize_filters(p, 'block1_conv1', [1, 0, 2], cfg, model='tiny', size=32, width=width,
                                batch_size=batch_size)
        assert got.rescued.tolist() == [False, True, False], width
        assert seen == calls, (width, batch_size, seen)  # (call width, group) of the first run and the rescue


def test_atlas_records_and_pages_say_which_filters_were_rescued(tiny_params, tmp_path):
    """An atlas chunk carries ``rescued``; its record, the index, the layer page and the filter page say so."""
    from jaxvis.atlas.compute import filter_chunk
    from jaxvis.atlas.plan import Chunk
    from jaxvis.edge.atlas_out import write_filters
    from jaxvis.edge.site import pages

    p = _dead_filter_params(tiny_params)
    plain = preset('seed', steps=20)
    cfg = dataclasses.replace(plain, rescue=dataclasses.replace(plain, redirect_relu_steps=16))
    chunk = Chunk('filters', 'block1_conv1', (1, 0, 2), 'c0', 1.0)
    kw = dict(model=get_model('tiny'), size=32, key=jax.random.key(0), snapshot_every=10, drop_dead=False,
              batch_size=8)
    res = filter_chunk(p, chunk, cfg, **kw)
    assert res['rescued'].tolist() == [False, True, False] and not res['dead'].any()
    assert filter_chunk(p, chunk, plain, **kw)['rescued'].tolist() == [False, False, False]
    rec = write_filters(str(tmp_path), chunk, res, 'clip')
    assert [r['rescued'] for r in rec['filters']] == [False, True, False]
    site = pages({'model': 'tiny'}, [{'layer': 'block1_conv1', 'filters': rec['filters'], 'channels': 4}])
    assert '<td>0%</td><td>1</td>' in site['index.html'] and '<th>dead</th><th>rescued</th>' in site['index.html']
    assert '1 rescued' in site['layer_block1_conv1.html'] and site['layer_block1_conv1.html'].count('(rescued)') == 1
    assert 'rescued (the first run left it dead' in site['filter_block1_conv1_0.html']
    assert 'rescued' not in site['filter_block1_conv1_1.html']
    old = [{k: v for k, v in r.items() if k != 'rescued'} for r in rec['filters']]  # a record from before
    assert '? rescued' in pages({'model': 'tiny'}, [{'layer': 'block1_conv1', 'filters': old}])['layer_block1_conv1.html']


@pytest.mark.parametrize('name', ['lucid', 'maco'])
def test_quality_preset_rescue_config(name):
    """lucid's and maco's rescue: the same config without transforms (maco: without its crops)."""
    cfg = preset(name, steps=8)
    assert cfg.rescue.transform is T.identity() and cfg.rescue.rescue is None
    assert cfg.rescue == dataclasses.replace(cfg, transform=T.identity(), rescue=None)
    assert preset(name, steps=8, rescue=False).rescue is None and cfg.to_dict()['rescue']['transform'] == 'identity'
    with pytest.raises(JaxvisError, match='same steps'):
        preset(name, steps=8, rescue=preset(name, steps=9, rescue=False))
    assert preset('seed').rescue is None and preset('keras-vis').rescue is None  # faithful presets: none
    with pytest.raises(JaxvisError, match='without a rescue'):
        preset('lucid', steps=8, rescue=cfg)


# ---------------------------------------------------------------- diverse batches

def test_visualize_diverse(tiny_params):
    cfg = preset('lucid', steps=15)
    kw = dict(model='tiny', size=32, n=3)
    plain = visualize_diverse(tiny_params, LAYER, 4, cfg, weight=0.0, **kw)
    div = visualize_diverse(tiny_params, LAYER, 4, cfg, weight=10.0, **kw)
    assert div.images.shape == (3, 32, 32, 3) and div.activation.shape == (3,) and div.history.shape == (15,)
    assert div.images.min() >= 0 and div.images.max() <= 255
    assert div.diversity > plain.diversity  # the diversity term makes the batch's Gram matrices differ
    assert np.all(plain.activation > 0)
    with pytest.raises(JaxvisError, match='n must be >= 2'):
        visualize_diverse(tiny_params, LAYER, 4, preset('lucid', steps=1), model='tiny', size=32, n=1)
    with pytest.raises(JaxvisError, match='image param'):
        visualize_diverse(tiny_params, LAYER, 4, preset('seed', steps=1), model='tiny', size=32)


def test_lucid_with_a_fixed_image_size_hands_the_network_that_size(tiny_params):
    """fixed_image_size (Lucent's): the transforms' 12 px larger image is resized to the given side before
    the network; the objective still goes up, and the picture keeps its own size."""
    cfg = preset('lucid', steps=6, fixed_image_size=32)
    x = jnp.zeros((32, 32, 3))
    assert cfg.transform(jax.random.key(0), x).shape == (32, 32, 3)
    assert preset('lucid').transform(jax.random.key(0), x).shape == (44, 44, 3)
    r = run(tiny_params, 'block2_conv1', [0, 3], steps=10, fixed_image_size=32)
    assert r.images.shape == (2, 32, 32, 3) and np.all(r.losses > 1.5 * r.history[0] + 1e-3)
    assert 'fixed_size(32)' in cfg.transform.__name__
