"""The chunk/step loop and the early drop of dead filters (jaxvis.schedule, visualize_filters(drop_dead=))."""
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.errors import JaxvisError
from jaxvis.models import get_model
from jaxvis.visualize import preset, schedule, visualize_filters


def fake_problem(dead: set[int]):
    """A scheduler-level stand-in for the engine: filter f's image is [1, 1, 3] filled with f; a step adds
    1 to the live filters' images (loss = image sum) and leaves the dead ones (loss 0) unchanged. Records
    every batch of filters stepped."""
    calls = []
    dead_mask = lambda f: jnp.isin(f, jnp.asarray(sorted(dead) or [-1]))  # noqa: E731

    def begin(pos, x=None):
        f = jnp.asarray(pos, jnp.int32)
        x0 = jnp.broadcast_to(f[:, None, None, None].astype(jnp.float32), (len(pos), 1, 1, 3))
        return (x0 if x is None else jnp.asarray(x)), (), f, f

    def step(x, opt_state, f, keys, t, real):
        calls.append((int(t), np.asarray(f)[:real].tolist()))
        d = dead_mask(f)[:, None, None, None]
        loss = jnp.where(d[:, 0, 0, 0], 0.0, jnp.sum(x, axis=(1, 2, 3)))
        return jnp.where(d, x, x + 1), opt_state, loss

    def score(x, f):
        return jnp.where(dead_mask(f), 0.0, jnp.sum(x, axis=(1, 2, 3)))

    return begin, step, score, calls


@pytest.mark.parametrize('snap', [set(), {0, 2, 3}])
def test_drop_dead_runs_only_live_filters_and_gives_the_same_result(snap):
    begin, step, score, calls = fake_problem({1, 3})
    full = schedule.run(begin, step, score, lambda x: x, n=5, bs=2, steps=3, snap_steps=snap)
    n_full = len(calls)
    calls.clear()
    done = []
    dropped = schedule.run(begin, step, score, lambda x: x, n=5, bs=2, steps=3, snap_steps=snap,
                           progress=done.append, drop_dead=True)
    assert n_full == 9  # 3 chunks x 3 steps
    # step 0 for every chunk, then the live filters 0, 2, 4 packed as [0, 2] and [4, (4)] for steps 1 and 2;
    # each step is told how many slots are real (the padding repeats the last: [4, 4] has one)
    assert calls == [(0, [0, 1]), (0, [2, 3]), (0, [4]), (1, [0, 2]), (2, [0, 2]), (1, [4]), (2, [4])]
    assert sum(done) == 5 * 3  # every filter-step reported, the dead ones' at once
    for a, b in zip(full, dropped):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dropped.history[:, 1], 0)
    np.testing.assert_array_equal(dropped.x[:, 0, 0, 0], [3, 1, 5, 3, 7])


def test_no_dead_filters_changes_nothing():
    begin, step, score, calls = fake_problem(set())
    a = schedule.run(begin, step, score, lambda x: x, n=3, bs=3, steps=2, snap_steps=set())
    b = schedule.run(begin, step, score, lambda x: x, n=3, bs=3, steps=2, snap_steps=set(), drop_dead=True)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_can_drop_dead():
    assert schedule.can_drop_dead(preset('seed'))
    assert schedule.can_drop_dead(preset('seed', steps=5, step_size=2.0))
    for name in ('jacobgil', 'lucid', 'yosinski1'):
        assert not schedule.can_drop_dead(preset(name))
    assert not schedule.can_drop_dead(preset('seed', jitter=4))
    assert not schedule.can_drop_dead(preset('seed', decay=0.01))
    assert not schedule.can_drop_dead(preset('seed', redirect_relu_steps=4))


@pytest.fixture
def params_with_dead(tiny_params):
    """TinyVGG params in which block2_conv1 filters 1 and 4 can never fire (bias -1e6)."""
    p = copy.deepcopy(tiny_params)
    p['block2_conv1']['bias'] = np.asarray(p['block2_conv1']['bias']).copy()
    p['block2_conv1']['bias'][[1, 4]] = -1e6
    return p


def test_engine_drop_dead_matches_full_run(params_with_dead):
    kw = dict(model=get_model('tiny', conv='direct'), size=32, key=jax.random.key(0), batch_size=2,
              snapshot_every=2)
    full = visualize_filters(params_with_dead, 'block2_conv1', range(6), preset('seed', steps=4), **kw)
    fast = visualize_filters(params_with_dead, 'block2_conv1', range(6), preset('seed', steps=4), drop_dead=True, **kw)
    assert list(np.flatnonzero(full.dead)) == [1, 4] == list(np.flatnonzero(fast.dead))
    for name, axis in (('images', 0), ('losses', 0), ('history', 1), ('snapshots', 1)):  # axis: filters
        a, b = getattr(full, name), getattr(fast, name)
        np.testing.assert_array_equal(np.take(a, [1, 4], axis), np.take(b, [1, 4], axis))  # dead: exact
        np.testing.assert_array_equal(b, a)  # live: other batch mates, and no image depends on them
    assert fast.snapshot_steps == full.snapshot_steps == (0, 2, 4)


def test_engine_drop_dead_refuses_moving_configs(params_with_dead):
    with pytest.raises(JaxvisError, match='drop_dead'):
        visualize_filters(params_with_dead, 'block2_conv1', [0, 1], preset('seed', steps=2, jitter=2), model='tiny',
                          size=32, drop_dead=True)


def test_partial_chunks_pad_to_the_full_batch():
    chunks = [(list(pos), real) for pos, real in schedule._chunks(np.arange(11), 8)]
    assert chunks == [(list(range(8)), 8), ([8, 9, 10, 10, 10, 10, 10, 10], 3)]
    assert [len(p) for p, _ in schedule._chunks(np.arange(3), 16)] == [16]
