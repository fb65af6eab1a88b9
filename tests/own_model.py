"""A small Flax CNN that jaxvis has never seen, written as a user would: BatchNorm in inference mode, a
strided convolution, a residual add, a global pool and a dense head. ``make()`` is what the CLI's
``--model own_model:make`` calls (run from this folder)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxvis


class Residual(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = nn.Conv(self.features, (3, 3))(x)
        y = nn.BatchNorm(use_running_average=not train)(y)
        y = nn.relu(y)
        self.sow('intermediates', 'act', y)
        return x + y


class SmallNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(6, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))       # stride 2
        x = Residual(8)(x, train)
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))       # stride 4
        x = Residual(8)(x, train)
        x = jnp.mean(x, axis=(1, 2))                         # global pool
        return nn.Dense(5)(x)


def variables(seed: int = 0):
    """Random variables with non-trivial batch statistics (BatchNorm must use them)."""
    v = SmallNet().init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))
    stats = jax.tree_util.tree_map(lambda a: a, v['batch_stats'])
    for i, block in enumerate(sorted(stats)):
        stats[block]['BatchNorm_0']['mean'] = jnp.full_like(stats[block]['BatchNorm_0']['mean'], 0.05 * (i + 1))
        stats[block]['BatchNorm_0']['var'] = jnp.full_like(stats[block]['BatchNorm_0']['var'], 0.5 + i)
    return {'params': v['params'], 'batch_stats': stats}


def make() -> jaxvis.Model:
    return jaxvis.from_flax(SmallNet(), variables(), train=False, name='smallnet')
