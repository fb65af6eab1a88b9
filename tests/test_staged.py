"""The staged CPU step (jaxvis.visualize.staged): the same ascent as the one-program step, and when it applies."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import objectives as O
from jaxvis.backend import tune, tune_chain, xla
from jaxvis.backend.conv_plan import conv_plan
from jaxvis.models import get_model
from jaxvis.models.forward import forward
from jaxvis.models.winograd import KERNEL, conv3x3_direct
from jaxvis.visualize import engine, preset, staged
from jaxvis.visualize.engine import visualize_filters


def run(monkeypatch, flag, conv, name, steps=4, snapshot_every=None):
    monkeypatch.setenv('JAXVIS_STAGED', flag)
    engine._compiled.cache_clear()
    model = get_model('tiny', conv=conv)
    params = model.init(jax.random.key(0))
    cfg = preset(name, steps=steps)
    if cfg.rescue is not None:  # lucid: filter 7 stays dead, its rescue rerun (kept only where it revives the
        cfg = dataclasses.replace(cfg, rescue=None)  # filter) would only compile two more programs
    try:
        return visualize_filters(params, 'block4_conv1', np.arange(8), cfg, model=model,
                                 size=48, key=jax.random.key(3), snapshot_every=snapshot_every)
    finally:
        engine._compiled.cache_clear()


@pytest.mark.parametrize('name', ['seed', 'lucid'])
def test_staged_step_is_the_one_program_step(monkeypatch, name):
    """Direct convolutions everywhere: the staged and the one-program step make the same images (the
    stem's gradient reaches the param through the head's pullback, the update is the same)."""
    cfg = preset(name)
    assert staged.cut_point(get_model('tiny', conv='direct'), 'block4_conv1', cfg, 48, 8) == 'block2_pool'
    one, two = run(monkeypatch, '0', 'direct', name, snapshot_every=4), run(monkeypatch, '1', 'direct', name)
    np.testing.assert_allclose(two.images, one.images, atol=1e-3)
    np.testing.assert_allclose(two.losses, one.losses, rtol=1e-5, atol=1e-6)
    assert one.snapshot_steps == (0, 4) and np.abs(one.images - one.snapshots[0]).max() > 1  # it ascended


def test_where_the_step_is_staged(monkeypatch):
    model = get_model('tiny', conv='direct')
    seed = preset('seed')
    assert staged.cut_point(model, 'block3_conv1', seed, 64, 8) == 'block2_pool'
    assert staged.cut_point(model, 'block2_conv2', seed, 64, 8) is None      # the target is in the stem
    assert staged.cut_point(model, 'block3_conv1', seed, 64, None) is None   # not CPU: one program
    assert staged.cut_point(model, 'block3_conv1', seed, 16, 8) is None      # too small to gain
    assert staged.cut_point(model, 'block3_conv1', preset('maco'), 64, 8) is None  # several crops a step
    assert staged.cut_point(model, 'block3_conv1', preset('seed', dtype='bfloat16'), 64, 8) is None
    stem_read = O.as_objective(lambda acts, f: acts['block3_conv1'][..., f].mean() + acts.get('block1_conv1').mean())
    assert staged.cut_point(model, 'block3_conv1', dataclasses.replace(seed, objective=lambda layer: stem_read),
                            64, 8) is None  # it needs a stem layer (here an AttributeError without it)
    every = O.as_objective(lambda acts, f: sum(a.mean() for a in acts.values()))
    assert staged.cut_point(model, 'block3_conv1', dataclasses.replace(seed, objective=lambda layer: every),
                            64, 8) is None  # it reads the stem's layers by iterating (nothing fails without them)
    rest_only = O.as_objective(lambda acts, f: sum(acts[k].mean() for k in acts if k.startswith('block3')))
    assert staged.cut_point(model, 'block3_conv1', dataclasses.replace(seed, objective=lambda layer: rest_only),
                            64, 8) == 'block2_pool'  # iterating, but reading only layers after the cut
    assert staged.cut_point(dataclasses.replace(model, prune=None), 'block3_conv1', seed, 64, 8) is None
    assert staged.cut_point(model, 'block3_conv1', seed, 64, 8, enabled=False) is None


def test_the_flag_is_read_on_every_call(monkeypatch):
    """``JAXVIS_STAGED`` changed between two calls of one process takes effect (the compiled steps are
    cached, the flag is part of their key)."""
    made, make = [], staged.staged_step
    monkeypatch.setattr(staged, 'staged_step', lambda *a, **kw: made.append(1) or make(*a, **kw))
    engine._compiled.cache_clear()
    model = get_model('tiny', conv='direct')
    params = model.init(jax.random.key(0))
    for flag in ('0', '1', '0', '1'):
        monkeypatch.setenv('JAXVIS_STAGED', flag)
        visualize_filters(params, 'block3_conv1', [0], preset('seed', steps=1), model=model, size=32)
    assert len(made) == 1  # staged once, then found in the cache; the '0' calls made one-program steps
    engine._compiled.cache_clear()


def test_the_stem_is_planned_as_one_chain(monkeypatch, tmp_path):
    """The stem's plan is one choice timed over the whole chain; convolutions under 64 input channels
    stay direct whatever it is."""
    monkeypatch.setenv('JAXVIS_CACHE', str(tmp_path))
    monkeypatch.setenv('JAXVIS_TUNE', '1')
    tune.clear()
    convs = (('block1_conv1', 32, 3, 64), ('block1_conv2', 32, 64, 64), ('block2_conv1', 16, 64, 128))
    fake = {'direct': 3.0, 'winograd2': 2.0, 'winograd4': 1.0, 'onednn': 1.5}
    want = {impl: fake[impl] for impl in tune.impls('float32')}   # oneDNN's row where it loads
    monkeypatch.setattr(tune_chain, 'time_chain', lambda conv, keys, impl, timer=None: fake[impl])
    try:
        plan = conv_plan(convs, 1, 'auto', kernel=KERNEL, whole=True)
        assert plan == tuple((n, 'winograd4') for n, *_ in convs[1:])
        fake.update(direct=1.0)  # the table answers now: nothing is timed again
        assert conv_plan(convs, 1, 'auto', kernel=KERNEL, whole=True) == plan
        key = tune_chain.chain_key([tune.Key(s, c, k, 1) for _, s, c, k in convs])
        assert tune.table()['timings'][key] == want
    finally:
        tune.clear()


def test_a_chain_is_timed_forward_and_backward():
    """What a chain times is the stem's work: its output and input gradient are a plain chain's
    (3x3 convolution and ReLU, a 2x2 max pool where the side halves), Winograd where it has the channels."""
    keys = [tune.Key(8, 3, 64, 2), tune.Key(8, 64, 64, 2), tune.Key(4, 64, 64, 2)]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    ws = [rng.standard_normal((3, 3, k.c_in, k.c_out)).astype(np.float32) * .1 for k in keys]
    ct = rng.standard_normal((2, 4, 4, 64)).astype(np.float32)

    def plain(a):
        a = jax.nn.relu(conv3x3_direct(a, ws[0]))
        a = jax.nn.relu(conv3x3_direct(a, ws[1]))
        a = a.reshape(2, 4, 2, 4, 2, 64).max(axis=(2, 4))
        return jax.nn.relu(conv3x3_direct(a, ws[2]))
    want, pull = jax.vjp(plain, x)
    for impl in tune.impls('float32'):
        ks = [KERNEL.prepare(w, impl if k.c_in >= 64 else 'direct') for w, k in zip(ws, keys)]
        y, dx = tune_chain.chain_step(KERNEL, keys, impl)(x, ks, ct)
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dx, pull(ct)[0], rtol=1e-4, atol=1e-4)


def test_real_channels_alone_in_two_or_in_eight(monkeypatch):
    """VGG16's own channel counts (the tiny test model's shapes hide batch effects: Eigen blocks them
    alike): with the staged step a filter's image is the same bytes alone, in 2 and in 8."""
    monkeypatch.setenv('JAXVIS_TUNE', '0')
    engine._compiled.cache_clear()
    model = get_model('vgg16', conv='direct')
    params = model.prune(model.init(jax.random.key(0)), 'block3_conv1')
    cfg = preset('seed', steps=3)
    assert staged.cut_point(model, 'block3_conv1', cfg, 32, 8) == 'block2_pool'
    runs = [visualize_filters(params, 'block3_conv1', np.arange(n), cfg, model=model, size=32, key=jax.random.key(5),
                              batch_size=n).images for n in (1, 2, 8)]
    engine._compiled.cache_clear()
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[1], runs[2][:2])


def test_the_padding_runs_no_stem(monkeypatch):
    """3 filters at width 8: the stem runs 3 images per step, not 8, and the 3 images are the bytes they
    have among 8 real filters (the padding's copies change no real slot)."""
    import types
    calls = {'stem': 0, 'stem_back': 0}

    def counting(jit):
        def counted_jit(fn, **kw):
            f = jit(fn, **kw)

            def counted(*a):
                calls[fn.__name__] += 1
                return f(*a)
            return counted
        return counted_jit
    monkeypatch.setattr(staged, 'xla', types.SimpleNamespace(jit=counting(xla.jit),
                                                             jit_unforwarded=counting(xla.jit_unforwarded)))
    monkeypatch.setenv('JAXVIS_STAGED', '1')
    engine._compiled.cache_clear()
    model = get_model('tiny', conv='direct')
    params = model.init(jax.random.key(0))
    kw = dict(model=model, size=48, key=jax.random.key(3))
    try:
        three = visualize_filters(params, 'block4_conv1', [0, 1, 2], preset('lucid', steps=4, rescue=False), **kw)
        assert calls == {'stem': 3 * 4, 'stem_back': 3 * 4}
        eight = visualize_filters(params, 'block4_conv1', np.arange(8), preset('lucid', steps=4, rescue=False), **kw)
        assert calls == {'stem': 3 * 4 + 8 * 4, 'stem_back': 3 * 4 + 8 * 4}
    finally:
        engine._compiled.cache_clear()
    assert np.array_equal(three.images, eight.images[:3]) and np.array_equal(three.history, eight.history[:, :3])


def test_outputs_passed_through_are_the_inputs_themselves():
    """xla.jit_unforwarded: the same values as xla.jit; an output that is an input unchanged is that
    input (not a copy made by the program), inside any pytree, on every call of a structure."""
    fn = lambda xs, y, i: (y * i, xs, {'again': y})
    f = xla.jit_unforwarded(fn)
    for k in range(2):
        xs = [jnp.arange(6.0).reshape(2, 3) + k + i for i in range(3)]
        y = jnp.full(3, 1.5 + k)
        got, want = f(xs, y, 2 + k), xla.jit(fn)(xs, y, 2 + k)
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_array_equal(a, b)
        assert all(a is b for a, b in zip(got[1], xs)) and got[2]['again'] is y and got[0] is not y
    host = np.arange(3.0)   # not a jax.Array: returned as jit returns it, never passed through
    out = f(xs, host, 2)
    assert isinstance(out[2]['again'], jax.Array) and out[2]['again'].dtype == jnp.float32
    np.testing.assert_array_equal(out[2]['again'], host)
    bf = jnp.ones(3, jnp.bfloat16)
    with jax.numpy_dtype_promotion('standard'):   # a weak scalar, then a float32 one: two plans, as jit
        assert f([], bf, jnp.asarray(2.0))[0].dtype == jnp.bfloat16
        assert f([], bf, jnp.float32(2.0))[0].dtype == jnp.float32


def test_stem_pullback_holds_the_kernels_not_copies(tiny_params, monkeypatch):
    """The staged step's stem stage passes the prepared Winograd kernels through to its pullback (the
    same arrays for every image, not copies made per call); such a pullback gives xla.jit's gradient."""
    real, made = xla.jit_unforwarded, []
    monkeypatch.setattr(xla, 'jit_unforwarded',
                        lambda fn: (lambda f: lambda *a: made.append(f(*a)) or made[-1])(real(fn)))
    monkeypatch.setenv('JAXVIS_STAGED', '1')
    engine._compiled.cache_clear()
    try:
        visualize_filters(tiny_params, 'block3_conv1', [0, 1], preset('seed', steps=1), size=32,
                          model=get_model('tiny', conv='winograd2'), key=jax.random.key(0))
    finally:
        engine._compiled.cache_clear()
    assert len(made) == 2   # the stem stage, once per real image of the group (2 filters, 1 step)
    first, second = ({id(v) for v in jax.tree_util.tree_leaves(pull)} for _, pull in made[:2])
    assert len(first & second) >= 2 * 4 * 16   # the 4 stem layers' u and ub (F2: 16 matrices each), the same arrays

    model = get_model('tiny', conv='winograd2').specialize(size=32, batch=1, upto='block2_conv2')
    params = jax.tree_util.tree_map(jnp.asarray, model.prepare(model.prune(tiny_params, 'block2_conv2')))
    fwd = forward(model, 'block2_conv2')
    stem = lambda p, x: jax.vjp(lambda a: fwd(p, a)['block2_conv2'], x)
    x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3)) * 50
    (h, pull), (h_ref, pull_ref) = real(stem)(params, x), xla.jit(stem)(params, x)
    g = jax.random.normal(jax.random.key(1), h.shape)
    back = xla.jit(lambda p, g: p(g)[0])
    np.testing.assert_array_equal(h, h_ref)
    np.testing.assert_array_equal(back(pull, g), back(pull_ref, g))


def _stem_shape(model, params) -> tuple:
    """``(h, w, c)`` of the tiny model's stem activation (block2_pool) at 32 px."""
    return forward(model, 'block2_pool')(params, jnp.zeros((1, 32, 32, 3)))['block2_pool'].shape[1:]


@pytest.mark.parametrize('name,conv', [('seed', 'winograd4'), ('lucid', 'winograd4'), ('seed', 'direct')])
def test_the_group_tail_gives_each_filter_its_own_gradient(tiny_params, name, conv):
    """The tail runs the network on a group as one batch and differentiates the sum of the filters'
    objectives: each filter gets what ``value_and_grad`` of its own objective gives (a plain per-filter
    re-implementation; the same bytes), whatever its batch mates."""
    model, cfg = get_model('tiny', conv=conv), preset(name)
    rest = forward(model, 'block3_conv2', redirect=cfg.redirect, after='block2_pool')
    objective = cfg.objective('block3_conv2')
    hs = jax.nn.relu(jax.random.normal(jax.random.key(2), (8,) + _stem_shape(model, tiny_params))) * 3
    fs = jnp.array([5, 2, 0, 1, 5, 7, 3, 3])
    act = jnp.float32(1) if cfg.redirect else None
    loss, dh = jax.jit(staged.tail_of_group(rest, objective))(tiny_params, hs, fs, act)

    def own(h, f):
        return jax.value_and_grad(lambda a: objective(rest(tiny_params, a[None], act), f).astype(jnp.float32))(h)
    want_loss, want_dh = jax.jit(jax.vmap(own))(hs, fs)
    assert loss.shape == (8,) and dh.shape == hs.shape and float(jnp.abs(dh).max()) > 0
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(dh, want_dh)
    mates = hs.at[1:].set(hs[::-1][:7])   # other batch mates: filter 0's result unchanged
    loss2, dh2 = jax.jit(staged.tail_of_group(rest, objective))(tiny_params, mates, fs, act)
    np.testing.assert_array_equal(loss2[0], loss[0])
    np.testing.assert_array_equal(dh2[0], dh[0])


def test_the_group_tail_refuses_an_objective_of_several_numbers(tiny_params):
    """One number per filter, as ``value_and_grad`` of a per-filter objective demands (the sum would
    otherwise take any shape)."""
    model = get_model('tiny', conv='direct')
    rest = forward(model, 'block3_conv2', after='block2_pool')
    hs = jnp.ones((2,) + _stem_shape(model, tiny_params))
    tail = staged.tail_of_group(rest, lambda acts, f: acts['block3_conv2'].mean((1, 2))[0, :2])
    with pytest.raises(TypeError, match='one number per filter'):
        tail(tiny_params, hs, jnp.arange(2), None)
