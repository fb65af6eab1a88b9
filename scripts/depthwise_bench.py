"""Time the input gradient of EfficientNet-Lite0's depthwise layers: XLA's grouped convolution against
:func:`jaxvis.models.depthwise.depthwise_conv` (shifted slices), at batch 8, float32.

    python scripts/depthwise_bench.py [--batch 8] [--repeats 5]

Prints one line per layer shape: milliseconds per jitted ``grad`` call, each way, and the largest
difference of the forward outputs.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from jax import lax

from jaxvis.models.depthwise import depthwise_conv

# (side, channels, kernel, stride) of EfficientNet-Lite0's depthwise layers at 224 px (one per shape)
SHAPES = ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (56, 144, 5, 2), (28, 240, 5, 1),
          (28, 240, 3, 2), (14, 480, 3, 1), (14, 672, 5, 2), (7, 1152, 5, 1), (7, 1152, 3, 1))


def grouped(x, w, stride):
    return lax.conv_general_dilated(x, w, (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                    feature_group_count=x.shape[-1])


def seconds(fn, x, w, repeats):
    fn(x, w).block_until_ready()
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x, w).block_until_ready()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--repeats', type=int, default=5)
    a = ap.parse_args()
    print('| side | channels | kernel | stride | grouped (ms) | shifted (ms) | ratio | max diff |')
    print('|---|---|---|---|---|---|---|---|')
    for side, c, k, s in SHAPES:
        kx, kw = jax.random.split(jax.random.key(0))
        x = jax.random.normal(kx, (a.batch, side, side, c))
        w = jax.random.normal(kw, (k, k, 1, c))
        ms = []
        for conv in (grouped, depthwise_conv):
            grad = jax.jit(jax.grad(lambda x, w, conv=conv, s=s: jnp.sum(jnp.tanh(conv(x, w, s)))))
            ms.append(1000 * seconds(grad, x, w, a.repeats))
        diff = float(jnp.max(jnp.abs(grouped(x, w, s) - depthwise_conv(x, w, s))))
        print(f'| {side} | {c} | {k} | {s} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[0] / ms[1]:.1f} | {diff:.1e} |')


if __name__ == '__main__':
    main()
