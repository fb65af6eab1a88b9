"""The filter-visualization engine on the tiny VGG: objective goes up, seed 003 reproduced step for step,
jit equals eager, vmap equals a loop, keys independent of the batch, dead filters, chunking, snapshots.

Batch invariance, measured on XLA:CPU (jax 0.10.2, 2 cores): convolutions and reductions are not
bitwise invariant to the batch size or to the batch mates (about 1 ulp, which can grow over steps).
Runs with the same filters in the same batch positions are compared bit for bit; a filter alone vs
inside a batch (or another chunking) is compared with the tolerances below.
"""
import copy
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvis import objectives as O
from jaxvis import optim
from jaxvis import param as P
from jaxvis.errors import JaxvisError
from jaxvis.models import forward, get_model, params_up_to, probe
from jaxvis.visualize import FilterConfig, preset
from jaxvis.visualize.engine import FilterResult, best_order, parse_filters, visualize_filters
from jaxvis.visualize.start import filter_keys, layer_id, start_point
from jaxvis.visualize.step import batched, make_score, make_step

SPEC = get_model('tiny')
LAYER = 'block3_conv1'   # 8 filters, 8x8 output at SIZE; cheaper to compile than block5
SIZE = 32
STEPS = 10
# A filter alone vs inside a batch of 8 (or batch_size 4 vs 10), after STEPS steps on LAYER: measured max
# |image difference| 3.05e-5 (2 ulp of values in 128..256) and max relative history difference 2.3e-7
# (all 8 filters alone; batch_size 4 vs 10 happened to be bitwise equal).
# Tolerances ~10x above; a real change (another key, another filter) moves images by tens.
IMG_ATOL = 3e-4
HIST_RTOL = 1e-5
HIST_ATOL = 1e-4


@pytest.fixture(scope='module')
def params(h5w):
    return h5w.random_params(h5w.TINY, seed=3)


ENGINE_ARGS = ('model', 'size', 'key', 'init', 'batch_size', 'snapshot_every', 'progress', 'devices', 'drop_dead')


def run(params, filters=tuple(range(8)), *, layer=LAYER, name='seed', **kw) -> FilterResult:
    """``visualize_filters`` on the tiny model with ``preset(name, steps=STEPS, **options)``."""
    engine = {k: kw.pop(k) for k in ENGINE_ARGS if k in kw}
    cfg = preset(name, **{'steps': STEPS, **kw})
    return visualize_filters(params, layer, filters, cfg, **{'model': 'tiny', 'size': SIZE, **engine})


@pytest.fixture(scope='module')
def base(params):
    """Seed preset, filters 0..7 in one batch, key 0, snapshots every 4 steps (0, 4, 8, 10)."""
    return run(params, list(range(8)), key=jax.random.key(0), snapshot_every=4)


def start_images(cfg, key, layer, filters, size=SIZE):
    """The engine's start images ``[N, size, size, 3]`` in model space, from the filters' keys."""
    keys = filter_keys(key, layer, np.asarray(filters))
    return np.asarray(jax.jit(jax.vmap(lambda k: start_point(cfg, k, size)))(keys))


# ------------------------------------------------------------------ objective goes up

def test_objective_goes_up(base):
    live = ~base.dead
    assert live.sum() >= 5, base.losses
    h = base.history[:, live]
    assert base.history.shape == (STEPS, 8)
    assert np.all(h[-1] > h[0]) and np.all(base.losses[live] > h[0])
    assert np.all(base.losses[live] > h[-1])  # the last update helped too
    assert (np.diff(h, axis=0) > 0).mean() >= 0.9
    assert np.all(base.losses[live] > 2 * h[0])  # not a rounding-level gain


def test_result_fields(base):
    assert base.images.shape == (8, SIZE, SIZE, 3) and base.images.dtype == np.float32
    assert base.losses.shape == (8,) and base.dead.shape == (8,) and base.dead.dtype == bool
    np.testing.assert_array_equal(base.filters, np.arange(8))
    np.testing.assert_array_equal(base.dead, base.losses <= 0)
    assert base.config == preset('seed', steps=STEPS)
    assert np.all(np.isfinite(base.images)) and np.all(np.isfinite(base.history))


# ------------------------------------------------------------------ seed 003, step for step

SEED_LAYER = 'block5_conv1'  # seed 003's layer
DEAD, LIVE = 2, 3  # filter DEAD of SEED_LAYER is killed by a bias of -1e4; LIVE stays live


@pytest.fixture(scope='module')
def seed_case(params):
    """The seed preset on SEED_LAYER, filters 0..7, from a known start, with one filter made dead:
    its bias of -1e4 makes its ReLU output 0 everywhere, so its gradient is exactly 0."""
    p = copy.deepcopy(params)
    p[SEED_LAYER]['bias'] = p[SEED_LAYER]['bias'].copy()
    p[SEED_LAYER]['bias'][DEAD] = -1e4
    rng = np.random.default_rng(2024)
    x0 = ((rng.random((8, SIZE, SIZE, 3)) - 0.5) * 20 + 128).astype(np.float32)  # seed 003's start
    init = np.asarray(SPEC.deprocess(x0))  # the engine takes RGB; its state is the model input
    res = visualize_filters(p, SEED_LAYER, list(range(8)), 'seed', model='tiny', size=SIZE, init=init,
                            snapshot_every=5)
    return types.SimpleNamespace(params=p, x0=x0, init=init, res=res)


def test_seed_preset_equals_a_plain_reimplementation_of_seed_003(seed_case):
    """Seed 003's loop, written out: loss = mean of channel f of the layer output for the raw input
    (no preprocessing), grads / (sqrt(mean(grads^2)) + 1e-7), x += 1.0 * grads, 20 steps, the loss
    recorded before each update. The seed stops a filter once its loss is <= 0; its gradient is then
    exactly 0, so running on (as the engine does) leaves the image where the seed left it."""
    res, params, x0 = seed_case.res, seed_case.params, seed_case.x0
    assert res.history.shape == (20, 8) and res.snapshot_steps == (0, 5, 10, 15, 20)
    np.testing.assert_allclose(res.snapshots[0], seed_case.init, atol=1e-4)  # start = the given init

    apply = forward(SPEC, SEED_LAYER)
    p = params_up_to(SPEC, params, SEED_LAYER)

    def loss_fn(x, f):
        return jnp.mean(apply(p, x)[SEED_LAYER][:, :, :, f])

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    for f in range(8):
        x = x0[f:f + 1]
        losses = []
        for _ in range(20):
            loss, g = value_and_grad(x, f)
            g = g / (jnp.sqrt(jnp.mean(jnp.square(g))) + 1e-7)
            x = x + 1.0 * g
            losses.append(float(loss))
        # measured (jax 0.10.2, XLA:CPU): max relative history difference 7.0e-7, max |image diff| 6.1e-5
        np.testing.assert_allclose(res.history[:, f], losses, rtol=1e-4, atol=1e-4, err_msg=f'filter {f}')
        np.testing.assert_allclose(res.images[f], np.asarray(SPEC.deprocess(x[0])), rtol=0, atol=1e-3,
                                   err_msg=f'filter {f}')
    assert (~res.dead).sum() >= 4  # the comparison covered filters that moved


def test_dead_filter_is_flagged_never_moves_and_is_not_ranked(seed_case):
    res = seed_case.res
    assert res.dead[DEAD] and not res.dead[LIVE]
    np.testing.assert_array_equal(res.history[:, DEAD], 0.0)
    assert res.losses[DEAD] == 0.0
    for s in range(len(res.snapshot_steps)):
        np.testing.assert_array_equal(res.snapshots[s, DEAD], res.snapshots[0, DEAD])
    np.testing.assert_array_equal(res.images[DEAD], res.snapshots[0, DEAD])
    assert np.abs(res.images[LIVE] - res.snapshots[0, LIVE]).max() > 1.0

    order = best_order(res)
    assert DEAD not in order
    assert set(order) == set(np.flatnonzero(~res.dead))
    assert np.all(np.diff(res.losses[order]) <= 0)
    np.testing.assert_array_equal(best_order(res, 2), order[:2])


def test_seed_preset_start_is_gray_noise_in_118_138(base, params):
    cfg = preset('seed')
    assert cfg.steps == 20 and cfg.optimizer is optim.ascent(1.0, normalize='rms')
    assert cfg.param is P.pixels(offset=118.0, scale=20.0, dist='uniform')
    x = start_images(cfg, jax.random.key(0), LAYER, range(8))
    assert x.min() >= 118.0 and x.max() < 138.0
    assert x.min() < 118.1 and x.max() > 137.9  # the whole range: (U - 0.5) * 20 + 128
    np.testing.assert_allclose(x.mean(), 128.0, atol=0.1)
    # the engine starts there (snapshot 0 is the deprocessed start), and each filter has its own noise
    model_space = np.asarray(SPEC.preprocess(base.snapshots[0]))
    np.testing.assert_allclose(model_space, x, atol=1e-4)
    assert not np.array_equal(x[0], x[1])


# ------------------------------------------------------------------ keys and determinism

def test_same_key_gives_identical_bytes(params, base):
    again = run(params, list(range(8)), key=None)  # None means key(0); no snapshots this time
    assert again.images.tobytes() == base.images.tobytes()
    assert again.history.tobytes() == base.history.tobytes()
    assert again.losses.tobytes() == base.losses.tobytes()
    assert again.snapshots is None and again.snapshot_steps == ()


CHUNK_FILTERS = list(range(8)) + [0, 1]


@pytest.fixture(scope='module')
def chunked(params):
    """Filters 0..7, 0, 1 with key 1, with batch_size 4 (rounded up to the engine's groups of 8: 8 + 2,
    padded) and 10 (16: one call of two groups)."""
    calls = []
    r4 = run(params, CHUNK_FILTERS, key=jax.random.key(1), batch_size=4, progress=calls.append)
    r10 = run(params, CHUNK_FILTERS, key=jax.random.key(1), batch_size=10)
    return types.SimpleNamespace(r4=r4, r10=r10, calls=calls)


def test_different_key_gives_different_images(base, chunked):
    other = chunked.r10  # key 1; base has key 0
    for i in range(8):
        assert np.abs(other.images[i] - base.images[i]).max() > 1.0, i


def test_filter_key_is_independent_of_the_filter_set():
    key = jax.random.key(42)
    all8 = np.asarray(jax.random.key_data(filter_keys(key, LAYER, np.arange(8))))
    some = np.asarray(jax.random.key_data(filter_keys(key, LAYER, [5, 2])))
    np.testing.assert_array_equal(all8[5], some[0])
    np.testing.assert_array_equal(all8[2], some[1])
    assert len({k.tobytes() for k in all8}) == 8
    by_hand = jax.random.fold_in(jax.random.fold_in(key, layer_id(LAYER)), 5)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(by_hand)), all8[5])
    other_layer = np.asarray(jax.random.key_data(filter_keys(key, 'block3_conv2', [5])))
    assert not np.array_equal(other_layer[0], all8[5])


def test_filter_alone_equals_filter_inside_a_batch_of_8(params, base):
    f = 5
    alone = run(params, [f], key=jax.random.key(0), snapshot_every=STEPS)
    np.testing.assert_array_equal(alone.snapshots[0, 0], base.snapshots[0, f])  # same start, bit for bit
    np.testing.assert_allclose(alone.images[0], base.images[f], rtol=0, atol=IMG_ATOL)
    np.testing.assert_allclose(alone.history[:, 0], base.history[:, f], rtol=HIST_RTOL, atol=HIST_ATOL)
    np.testing.assert_allclose(alone.losses[0], base.losses[f], rtol=HIST_RTOL)
    assert np.abs(alone.images[0] - alone.snapshots[0, 0]).max() > 1.0  # it did move


def test_batch_size_chunking(chunked):
    r4, r10 = chunked.r4, chunked.r10
    for r in (r4, r10):
        assert r.images.shape == (10, SIZE, SIZE, 3) and r.history.shape == (STEPS, 10)
        assert r.losses.shape == (10,) and r.dead.shape == (10,)
        np.testing.assert_array_equal(r.filters, CHUNK_FILTERS)
    # progress counts real filters only, not the padding of the last chunk
    assert chunked.calls == [8] * STEPS + [2] * STEPS
    # the same bytes whatever the batch size (every operation sees groups of 8)
    np.testing.assert_array_equal(r4.images, r10.images)
    np.testing.assert_array_equal(r4.history, r10.history)
    np.testing.assert_array_equal(r4.losses, r10.losses)
    # a repeated filter has the same key, hence the same image
    np.testing.assert_allclose(r10.images[8:], r10.images[:2], rtol=0, atol=IMG_ATOL)
    np.testing.assert_allclose(r4.images[8:], r4.images[:2], rtol=0, atol=IMG_ATOL)


# ------------------------------------------------------------------ one step: jit, eager, vmap

STEP_LAYER = 'block2_conv1'  # the step machinery does not depend on depth; eager is slow on deep layers
STEP_CONFIGS = {
    'seed': preset('seed'),
    # jitter, decay, blur on even steps only, raw gradients, the 'progress' learning rate
    # (the percentile clips are checked under jit / vmap in test_regularizers.py)
    'regularized': preset('seed', jitter=2, decay=0.05, blur_sigma=0.5, blur_every=2, normalize='none',
                          lr_policy='progress'),
    'adam': preset('seed', optimizer=optax.adam(2.0)),
}


@pytest.mark.parametrize('name', list(STEP_CONFIGS))
def test_step_jit_equals_eager_and_vmap_equals_loop(params, name):
    cfg = STEP_CONFIGS[name]
    step = make_step(SPEC, STEP_LAYER, cfg)
    p = params_up_to(SPEC, params, STEP_LAYER)
    n, n_steps = 4, 2
    keys = filter_keys(jax.random.key(7), STEP_LAYER, np.arange(n))
    x = jnp.asarray(start_images(cfg, jax.random.key(7), STEP_LAYER, range(n)))
    f = jnp.arange(n, dtype=jnp.int32)
    init_state = cfg.optimizer.init

    xb, sb, lb = x, jax.vmap(init_state)(x), []
    bstep = batched(step)
    for t in range(n_steps):
        xb, sb, loss = bstep(p, xb, sb, f, keys, jnp.int32(t))
        lb.append(np.asarray(loss))
    xb, lb = np.asarray(xb), np.stack(lb)

    jstep = jax.jit(step)
    for i in range(n):
        xi, si, li = x[i], init_state(x[i]), []
        for t in range(n_steps):
            xi, si, loss = jstep(p, xi, si, f[i], keys[i], jnp.int32(t))
            li.append(float(loss))
        # vmap == loop of the per-image jitted step. Measured max |x diff| 1.5e-5 (1 ulp at 128),
        # relative loss diff 6.7e-8; eager vs batched below: 3.1e-5 and 1.5e-7.
        np.testing.assert_allclose(xb[i], np.asarray(xi), rtol=1e-5, atol=1e-4, err_msg=f'image {i}')
        np.testing.assert_allclose(lb[:, i], li, rtol=1e-5, atol=1e-5, err_msg=f'image {i}')

    i = 1  # eager (op by op) on one image vs the jitted batch
    xi, si, li = x[i], init_state(x[i]), []
    for t in range(n_steps):
        xi, si, loss = step(p, xi, si, f[i], keys[i], jnp.int32(t))
        li.append(float(loss))
    np.testing.assert_allclose(xb[i], np.asarray(xi), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(lb[:, i], li, rtol=1e-5, atol=1e-5)
    assert lb[-1, i] != lb[0, i] and np.abs(xb[i] - np.asarray(x[i])).max() > 1e-2  # the step did something


# ------------------------------------------------------------------ dead filters

def test_best_order_ranks_by_final_loss():
    res = FilterResult(images=np.zeros((5, 1, 1, 3), np.float32),
                       losses=np.array([3.0, 0.0, 7.0, -1.0, 5.0], np.float32),
                       history=np.zeros((1, 5), np.float32), dead=np.array([0, 1, 0, 1, 0], bool),
                       filters=np.array([10, 11, 12, 13, 14]), snapshots=None, snapshot_steps=(),
                       config=FilterConfig())
    np.testing.assert_array_equal(best_order(res), [2, 4, 0])
    np.testing.assert_array_equal(best_order(res, 1), [2])


# ------------------------------------------------------------------ snapshots

def test_snapshots(params, base):
    assert base.snapshot_steps == (0, 4, 8, 10)
    assert base.snapshots.shape == (4, 8, SIZE, SIZE, 3) and base.snapshots.dtype == np.float32
    np.testing.assert_array_equal(base.snapshots[-1], base.images)
    # snapshot s is the image before step snapshot_steps[s]: its objective is history[that step]
    score = jax.jit(jax.vmap(make_score(SPEC, LAYER, O.channel(LAYER)), in_axes=(None, 0, 0)))
    p = params_up_to(SPEC, params, LAYER)
    for s, t in enumerate(base.snapshot_steps[:-1]):
        got = np.asarray(score(p, SPEC.preprocess(base.snapshots[s]), jnp.arange(8)))
        np.testing.assert_allclose(got, base.history[t], rtol=1e-4, atol=1e-4, err_msg=f'step {t}')
    final = np.asarray(score(p, SPEC.preprocess(base.images), jnp.arange(8)))
    np.testing.assert_allclose(final, base.losses, rtol=1e-4, atol=1e-4)


def test_snapshot_every_must_be_positive(params):
    with pytest.raises(JaxvisError, match='snapshot_every'):
        run(params, [0], snapshot_every=-2)


# ------------------------------------------------------------------ optimizers and presets

def test_optax_optimizer_objective_goes_up(params, base):
    adam = optax.adam(1.0)
    res = run(params, list(range(8)), optimizer=adam, normalize='none')
    assert res.config.optimizer is adam
    live = ~res.dead
    assert live.sum() >= 5
    assert np.all(res.losses[live] > res.history[0, live])
    assert np.all(res.history[-1, live] > res.history[0, live])
    np.testing.assert_array_equal(res.history[0], base.history[0])  # same start...
    assert np.abs(res.images - base.images).max() > 1.0                # ...another path


@pytest.mark.parametrize('name', ['jacobgil', 'yosinski1', 'yosinski2', 'yosinski3', 'yosinski4'])
def test_presets_run_without_nan(params, name):
    res = visualize_filters(params, 'block1_conv1', [0, 1, 2, 3], preset(name, steps=3), model='tiny', size=SIZE,
                            snapshot_every=3)
    assert res.config.steps == 3
    assert res.config == preset(name, steps=3)  # cached pieces: the same preset gives an equal config
    assert hash(res.config) == hash(preset(name, steps=3))
    assert res.images.shape == (4, SIZE, SIZE, 3) and res.history.shape == (3, 4)
    for a in (res.images, res.losses, res.history, res.snapshots):
        assert np.all(np.isfinite(a)), name
    assert np.abs(res.images - res.snapshots[0]).max() > 1e-3  # something moved


# ------------------------------------------------------------------ filter selection and errors

def test_parse_filters_forms():
    np.testing.assert_array_equal(parse_filters('all', 8, LAYER), np.arange(8))
    np.testing.assert_array_equal(parse_filters(range(2, 5), 8, LAYER), [2, 3, 4])
    np.testing.assert_array_equal(parse_filters(slice(1, None, 3), 8, LAYER), [1, 4, 7])
    np.testing.assert_array_equal(parse_filters([7, 0, 3], 8, LAYER), [7, 0, 3])
    np.testing.assert_array_equal(parse_filters(5, 8, LAYER), [5])
    np.testing.assert_array_equal(parse_filters(np.array([1, 2]), 8, LAYER), [1, 2])
    assert parse_filters([1], 8, LAYER).dtype == np.int64


@pytest.mark.parametrize('bad', [[0, 8], 8, [-1], range(6, 10)])
def test_parse_filters_out_of_range_names_the_count(bad):
    with pytest.raises(JaxvisError, match=f'{LAYER} has 8 filters'):
        parse_filters(bad, 8, LAYER)


@pytest.mark.parametrize('bad', [[], [1.5], slice(8, None)])
def test_parse_filters_rejects_empty_and_non_integers(bad):
    with pytest.raises(JaxvisError):
        parse_filters(bad, 8, LAYER)


def test_visualize_filters_errors(params):
    with pytest.raises(JaxvisError, match='8 filters'):
        run(params, [0, 8])
    with pytest.raises(JaxvisError, match='valid layers') as e:
        run(params, [0], layer='block6_conv1')
    assert 'block5_conv3' in str(e.value) and 'block1_conv1' in str(e.value)
    with pytest.raises(JaxvisError, match='preset'):
        run(params, [0], name='nope')
    with pytest.raises(JaxvisError, match='unknown option'):
        run(params, [0], learning_rate=1.0)
    with pytest.raises(JaxvisError, match='init'):
        run(params, [0, 1], init=np.zeros((3, SIZE, SIZE, 3), np.float32))
    with pytest.raises(JaxvisError, match='preset'):
        visualize_filters(params, LAYER, [0], 'nope', model='tiny', size=SIZE)
    with pytest.raises(JaxvisError, match='takes no jitter'):
        preset('lucid', jitter=3)
    with pytest.raises(JaxvisError, match='regularizer'):
        preset('jacobgil', decay=0.1)


def test_bad_batch_size_is_a_jaxvis_error(params):
    # Library bug (reported): batch_size < 1 is not checked by visualize_filters (only by the CLI);
    # range(0, n, -1) is empty and it ends in numpy's 'need at least one array to concatenate'.
    with pytest.raises(JaxvisError, match='batch_size'):
        run(params, [0, 1], batch_size=-1)


def test_size_too_small_for_the_layer(params):
    # block5_conv1 follows 4 pools: it needs 16 px (15 -> 7 -> 3 -> 1 -> 0); block5_pool needs 32
    probe.check_size(SPEC, 'block5_conv1', 16)
    with pytest.raises(JaxvisError, match='at least 16'):
        probe.check_size(SPEC, 'block5_conv1', 15)
    probe.check_size(SPEC, 'block5_pool', 32)
    with pytest.raises(JaxvisError, match='at least 32'):
        probe.check_size(SPEC, 'block5_pool', 31)
    with pytest.raises(JaxvisError, match='size 8 is too small for block5_conv1'):
        run(params, [0], layer='block5_conv1', size=8)


# ------------------------------------------------------------------ real size

@pytest.mark.slow
def test_vgg16_block5_conv1_real_size(vgg16_params):
    res = visualize_filters(vgg16_params, 'block5_conv1', [0, 511], preset('seed', steps=2), model='vgg16', size=64)
    assert res.images.shape == (2, 64, 64, 3) and res.history.shape == (2, 2) and res.losses.shape == (2,)
    np.testing.assert_array_equal(res.filters, [0, 511])
    assert np.all(np.isfinite(res.images)) and np.all(np.isfinite(res.history)) and np.all(np.isfinite(res.losses))
