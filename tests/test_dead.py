"""The dead flag on a layer without spatial axes (logits): dead only when the objective never moved, not
when it is negative; a spatial ReLU layer keeps the seeds' ``loss <= 0``. The engine's flag on the tiny
EfficientNet's logits: tests/test_cli_efficientnet.py::test_filters_on_logits_goes_up."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.visualize import preset
from jaxvis.visualize.schedule import dead_mask
from jaxvis.visualize.step import no_gradient, restart_dead


def test_dead_mask_rules():
    losses = np.array([-0.5, 0.0, 2.0, -1.0], np.float32)
    history = np.array([[-3.0, 0.0, 1.0, -1.0], [-2.0, 0.0, 1.5, -1.0]], np.float32)
    np.testing.assert_array_equal(dead_mask(losses, history, spatial=True), losses <= 0)
    # rising negative logit: live; constant ones (whatever their sign): dead
    np.testing.assert_array_equal(dead_mask(losses, history, spatial=False), [False, True, False, True])
    np.testing.assert_array_equal(dead_mask(losses, history[:0], spatial=False), [False] * 4)


def test_restart_on_a_flat_layer_follows_the_gradient_not_the_sign():
    assert bool(no_gradient({'a': jnp.zeros(3), 'b': jnp.zeros((2, 2))}))
    assert not bool(no_gradient({'a': jnp.zeros(3), 'b': jnp.array([[0.0, 1e-30], [0.0, 0.0]])}))
    cfg = preset('lucid', steps=40)
    key = jax.random.key(3)
    p = jax.tree_util.tree_map(lambda a: a + 0.3, cfg.param.init(key, (8, 8, 3)))
    opt = cfg.optimizer.init(p)
    rule = jax.jit(lambda dead: restart_dead(cfg, p, opt, dead, key, jnp.int32(cfg.restarts[0])))
    kept = rule(no_gradient({'g': jnp.array([0.0, -0.5])}))
    np.testing.assert_array_equal(kept[0].coeffs, p.coeffs)    # moving, whatever the objective's sign: kept
    gone = rule(no_gradient({'g': jnp.zeros(2)}))
    assert not np.array_equal(gone[0].coeffs, p.coeffs)       # stuck, whatever the sign: restarted
