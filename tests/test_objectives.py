"""Composable objectives on constructed activations: channel, neuron, deepdream, arithmetic, diversity."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import objectives as O

L = 'block1_conv1'


def _acts(b=2, h=4, w=4, c=3, seed=0):
    return {L: jnp.asarray(np.random.default_rng(seed).random((b, h, w, c)), jnp.float32)}


def test_channel_uses_f_or_a_fixed_index():
    acts = _acts()
    a = np.asarray(acts[L])
    assert float(O.channel(L)(acts, jnp.int32(1))) == pytest.approx(a[..., 1].mean(), rel=1e-6)
    assert float(O.channel(L, 2)(acts, jnp.int32(1))) == pytest.approx(a[..., 2].mean(), rel=1e-6)
    # a [B, C] layer (logits, pooled features): unit f averaged over the batch
    flat = {'logits': jnp.asarray([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])}
    assert float(O.channel('logits')(flat, jnp.int32(2))) == pytest.approx(4.0)


@pytest.mark.parametrize('h, w, y, x', [(5, 5, 2, 2), (4, 6, 2, 3)])
def test_neuron_defaults_to_the_centre(h, w, y, x):
    acts = _acts(h=h, w=w)
    a = np.asarray(acts[L])
    assert float(O.neuron(L)(acts, jnp.int32(1))) == pytest.approx(a[:, y, x, 1].mean(), rel=1e-6)
    assert float(O.neuron(L, 0, y=0, x=1)(acts, jnp.int32(1))) == pytest.approx(a[:, 0, 1, 0].mean(), rel=1e-6)


def test_neuron_gradient_touches_one_position():
    acts = _acts()
    g = jax.grad(lambda a: O.neuron(L)({L: a}, jnp.int32(2)))(acts[L])
    assert int(jnp.sum(g != 0)) == 2  # one position of channel 2, in each of the 2 images


def test_deepdream_is_mean_square():
    acts = _acts()
    assert float(O.deepdream(L)(acts, jnp.int32(0))) == pytest.approx(float(jnp.mean(acts[L] ** 2)), rel=1e-6)


def test_arithmetic():
    acts = _acts()
    f = jnp.int32(0)
    c0, c1, c2 = (float(O.channel(L, i)(acts, f)) for i in range(3))
    cases = {
        '0.2a+0.8b': (0.2 * O.channel(L, 0) + 0.8 * O.channel(L, 1), 0.2 * c0 + 0.8 * c1),
        'a-b': (O.channel(L, 0) - O.channel(L, 1), c0 - c1),
        '-a': (-O.channel(L, 2), -c2),
        'a*b': (O.channel(L, 0) * O.channel(L, 1), c0 * c1),
        'a/2': (O.channel(L, 0) / 2, c0 / 2),
        'a+3': (O.channel(L, 0) + 3, c0 + 3),
        '3-a': (3 - O.channel(L, 0), 3 - c0),
        'sum': (sum(O.channel(L, i) for i in range(3)), c0 + c1 + c2),
        'plain closure': (O.channel(L, 0) - (lambda acts, f: jnp.mean(acts[L][..., 0])), c0 - c0),
        'array weight': (jnp.float32(2.0) * O.channel(L, 1), 2 * c1),
    }
    for name, (obj, want) in cases.items():
        assert isinstance(obj, O.Objective), name
        assert float(obj(acts, f)) == pytest.approx(want, rel=1e-5, abs=1e-6), name
    assert 'channel' in repr(0.2 * O.channel(L, 0) + O.channel(L, 1))


def test_vmap_over_filters_and_jit():
    acts = _acts()
    obj = O.channel(L) - 0.5 * O.neuron(L)
    fs = jnp.arange(3)
    loop = np.asarray([obj(acts, f) for f in fs])
    np.testing.assert_allclose(jax.jit(jax.vmap(obj, in_axes=(None, 0)))(acts, fs), loop, rtol=1e-6)


def test_diversity_identical_versus_different():
    one = np.random.default_rng(0).random((1, 4, 4, 6)).astype(np.float32)
    same = {L: jnp.asarray(np.repeat(one, 4, axis=0))}
    assert float(O.diversity(L)(same, 0)) == pytest.approx(-3.0, abs=1e-4)  # -(B - 1): max similarity
    # images using disjoint channels have orthogonal Gram matrices: no similarity at all
    disjoint = np.zeros((3, 4, 4, 6), np.float32)
    for b in range(3):
        disjoint[b, ..., 2 * b:2 * b + 2] = one[0, ..., :2]
    assert float(O.diversity(L)({L: jnp.asarray(disjoint)}, 0)) == pytest.approx(0.0, abs=1e-6)
    # random images lie strictly between
    rand = float(O.diversity(L)(_acts(b=3, c=6), 0))
    assert -2.0 < rand < 0.0


def test_diversity_gradient_makes_images_differ():
    """A gradient step on the diversity term lowers the batch's Gram similarity."""
    a = jnp.asarray(np.random.default_rng(1).random((2, 4, 4, 3)), jnp.float32)
    obj = O.diversity(L)
    before = float(obj({L: a}, 0))
    g = jax.grad(lambda a: obj({L: a}, 0))(a)
    after = float(obj({L: a + 0.05 * g / jnp.abs(g).max()}, 0))
    assert after > before
