"""One measured choice for a chain of convolutions: a staged step's stem (:mod:`jaxvis.visualize.staged`).

Timed one by one, VGG16's 128 px, 64-channel convolutions mislead at one image: Winograd F2 took 14.9 ms
there against 4.1 for F4 and 6.2 direct, yet a stem of F2 convolutions ran as fast as one of F4 in the
real step (docs/performance.md). So a stem is timed whole, as it runs: each 3x3 convolution with its
ReLU, a 2x2 max pool where the side halves, forward and input gradient, one image per call; the
candidates are the plans that give every convolution of at least :data:`tune.MIN_CHANNELS` input
channels the same implementation. The timings go into :mod:`.tune`'s table (kept on disk with it).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.backend import tune
from jaxvis.backend.xla import compiler_options

REPEATS = 5


def chain_key(keys: Sequence[tune.Key]) -> str:
    return 'chain:' + ';'.join(tune._key(k) for k in keys)


def _impl_of(k: tune.Key, impl: str) -> str:
    return impl if k.c_in >= tune.MIN_CHANNELS and k.side >= 2 else 'direct'


def chain_step(conv: tune.Conv, keys: Sequence[tune.Key], impl: str) -> Callable:
    """Jitted ``(x, kernels, ct) -> (y, dx)``: the chain's forward and input gradient."""
    kern = tune.as_kernel(conv)

    def run(x, ks):
        for i, (k, w) in enumerate(zip(keys, ks)):
            x = jax.nn.relu(kern.conv(x, w, _impl_of(k, impl)))
            if i + 1 < len(keys) and keys[i + 1].side * 2 == k.side:
                n, h, wd, c = x.shape
                x = x.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
        return x

    def fwd_and_grad(x, ks, ct):
        y, pull = jax.vjp(lambda a: run(a, ks), x)
        return y, pull(ct)[0]
    return jax.jit(fwd_and_grad, compiler_options=compiler_options())


def time_chain(conv: tune.Conv, keys: Sequence[tune.Key], impl: str,
               timer: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one call of :func:`chain_step`: the fastest of :data:`REPEATS` timed runs of
    :func:`tune.calls_per_run` calls each (a neighbour on a shared host only ever adds time, and at
    10-20 ms a call the median of three still flipped the choice between runs)."""
    kern = tune.as_kernel(conv)
    rng = np.random.default_rng(0)
    first, last = keys[0], keys[-1]
    x = jnp.asarray(rng.standard_normal((first.batch, first.side, first.side, first.c_in)) * 50, jnp.float32)
    ks = [jax.block_until_ready(kern.prepare(jnp.asarray(
        rng.standard_normal((3, 3, k.c_in, k.c_out)) * (2 / (9 * k.c_in)) ** .5, jnp.float32), _impl_of(k, impl)))
        for k in keys]
    ct = jnp.ones((last.batch, last.side, last.side, last.c_out), jnp.float32)
    step = chain_step(kern, keys, impl)
    jax.block_until_ready(step(x, ks, ct))
    return min(tune.per_call(lambda: step(x, ks, ct), tune.calls_per_run(first), REPEATS, timer))


def best_chain(conv: tune.Conv, keys: Sequence[tune.Key], default: Callable[[], str | None],
               timer: Callable[[], float] = time.perf_counter) -> str | None:
    """The measured implementation for the chain's convolutions of at least :data:`tune.MIN_CHANNELS`
    input channels (measured now if the table lacks it and measuring is on: :func:`tune.kept`; Winograd
    only if it beats direct by :data:`tune.MARGIN`); ``default()`` when measuring is off and nothing was
    measured."""
    timings = tune.kept(chain_key(keys), 'float32', lambda: measure_chain(conv, keys, timer))
    return default() if timings is None else tune.choose(timings)


def measure_chain(conv: tune.Conv, keys: Sequence[tune.Key],
                  timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Time the chain for every implementation and remember it (the table); returns ``{impl: seconds}``."""
    timings = {impl: time_chain(conv, keys, impl, timer) for impl in tune.impls('float32')}
    tune.remember(chain_key(keys), timings)
    return timings
