#!/usr/bin/env python
"""Per-layer cost of VGG16's convolutions, forward plus input gradient, by algorithm and XLA:CPU options.

For each distinct conv shape up to block5_conv1 at 128x128 (spatial side, channels in -> out), times
``f(x, w)`` and the gradient with respect to ``x`` (what the filter step needs), median of ``--repeats``
after a warm-up, the kernel prepared once beforehand as the engine does
(:func:`jaxvis.models.winograd.prepare`), for:

  xla        ``lax.conv`` compiled with XLA's default options (jaxlib 0.10: YNNPACK convolutions)
  direct     ``lax.conv`` with jaxvis's CPU options (:func:`jaxvis.backend.xla.compiler_options`: Eigen)
  winograd2  F(2x2, 3x3) with jaxvis's options     winograd4  F(4x4, 3x3) with jaxvis's options

and prints one row per shape (ms for fwd + input grad, GFLOP/s of the direct-equivalent work, the ratio to
``xla``) plus which impl the static rule of :func:`jaxvis.backend.conv_plan.conv_plan` picks at this batch
(``jaxvis tune`` measures the engine's own choice). Timings in one process, so
ratios are comparable; absolute numbers move with machine load.

``--torch PYTHON`` also times the same shapes in PyTorch (``scripts/torch_conv_layers.py``, NCHW and
channels_last, run with that interpreter right after) and adds its columns and the ratio of jaxvis's
measured choice (:func:`jaxvis.backend.tune.choose` over direct, F2, F4) to PyTorch's better layout.

  python scripts/conv_layers.py --batch 16
  python scripts/conv_layers.py --batch 8 --torch ~/torch-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.backend import conv_plan, tune, xla
from jaxvis.models import VGG16_BLOCKS, layer_table
from jaxvis.models.vgg import _convs
from jaxvis.models.winograd import conv3x3_prepared, prepare

IMPLS = ('xla', 'direct', 'winograd2', 'winograd4')


def shapes(size: int) -> list[tuple[str, int, int, int, int]]:
    """``(first layer, side, c_in, c_out, count)`` per distinct conv shape up to block5_conv1."""
    rows, side, c_in = {}, size, 3
    for name, kind, ch, _ in layer_table(VGG16_BLOCKS):
        if kind == 'pool':
            side //= 2
        else:
            key = (side, c_in, ch)
            rows.setdefault(key, [name, 0])[1] += 1
        c_in = ch
        if name == 'block5_conv1':
            break
    return [(v[0], *k, v[1]) for k, v in rows.items()]


def time_impl(impl: str, x, w, repeats: int) -> float:
    opts = None if impl == 'xla' else xla.compiler_options()
    conv = 'direct' if impl == 'xla' else impl
    ct = jnp.ones(x.shape[:-1] + (w.shape[-1],), x.dtype)
    k = prepare(w, conv)  # as the engine does, once per job (Winograd: the kernel's transforms)
    f = jax.jit(lambda x, k: conv3x3_prepared(x, k, conv), compiler_options=opts)
    g = jax.jit(lambda x, k: jax.vjp(lambda a: conv3x3_prepared(a, k, conv), x)[1](ct)[0], compiler_options=opts)
    total = 0.0
    for fn in (f, g):
        jax.block_until_ready(fn(x, k))
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, k))
            runs.append(time.perf_counter() - t0)
        total += statistics.median(runs)
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--torch', default=None, metavar='PYTHON', help='also time PyTorch with this interpreter')
    args = ap.parse_args(argv)
    # the static rule (what conv='auto' does with JAXVIS_TUNE=0); `jaxvis tune` prints the measured choice
    plan = dict(conv_plan.conv_plan(_convs(VGG16_BLOCKS, args.size, 'block5_conv1'), args.batch, 'auto'))
    print(f'batch {args.batch}, {args.size}x{args.size}, jax {jax.__version__}, {jax.default_backend()}; '
          'ms for forward + input gradient (GFLOP/s), x = vs xla')
    print('| layer (count) | side | in -> out | ' + ' | '.join(IMPLS) + ' | static rule |')
    print('|---' * (len(IMPLS) + 4) + '|')
    totals, auto, best = dict.fromkeys(IMPLS, 0.0), 0.0, {}
    rng = np.random.default_rng(0)
    for name, side, c_in, c_out, count in shapes(args.size):
        x = jnp.asarray(rng.standard_normal((args.batch, side, side, c_in), np.float32))
        w = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out), np.float32) * np.float32((2 / 9 / c_in) ** .5))
        gflop = 2 * 2 * args.batch * side * side * c_in * c_out * 9 / 1e9
        t = {impl: time_impl(impl, x, w, args.repeats) for impl in IMPLS}
        for impl in IMPLS:
            totals[impl] += count * t[impl]
        auto += count * t[plan.get(name, 'direct')]
        chosen = tune.choose({i: t[i] for i in tune.IMPLS}) if c_in >= tune.MIN_CHANNELS else 'direct'
        best[name] = (side, c_in, c_out, count, chosen, t[chosen])
        cells = [f'{t[i] * 1e3:.0f} ({gflop / t[i]:.0f}) x{t["xla"] / t[i]:.2f}' for i in IMPLS]
        print(f'| {name} ({count}) | {side} | {c_in} -> {c_out} | ' + ' | '.join(cells) +
              f' | {plan.get(name, "direct")} |', flush=True)
    print('| all 11 convs |  |  | ' + ' | '.join(f'{totals[i] * 1e3:.0f} x{totals["xla"] / totals[i]:.2f}'
                                                 for i in IMPLS) + f' | {auto * 1e3:.0f} x{totals["xla"] / auto:.2f} |')
    if args.torch:
        torch_rows(args, best)
    return 0


def torch_rows(args, best: dict) -> None:
    '''PyTorch's time per shape next to jaxvis's measured choice (ms, forward + input gradient).'''
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torch_conv_layers.py')
    keys = [f'{side},{c_in},{c_out}' for side, c_in, c_out, *_ in best.values()]
    out = subprocess.run([args.torch, peer, '--batch', str(args.batch), '--repeats', str(args.repeats),
                          '--shapes', *keys], capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    print(f'\nPyTorch {res["torch"]}, {res["threads"]} threads, batch {res["batch"]}; ms; x = PyTorch best / jaxvis')
    print('| layer (count) | jaxvis (its choice) | PyTorch NCHW | PyTorch channels_last | x |')
    print('|---|---|---|---|---|')
    sums = [0.0, 0.0, 0.0]
    for (name, (side, c_in, c_out, count, chosen, t)), key in zip(best.items(), keys):
        nchw, cl = res['ms'][key]['nchw'], res['ms'][key]['channels_last']
        for i, v in enumerate((t * 1e3, nchw, cl)):
            sums[i] += count * v
        print(f'| {name} ({count}) | {t * 1e3:.1f} ({chosen}) | {nchw:.1f} | {cl:.1f} | x{min(nchw, cl) / (t * 1e3):.2f} |')
    print(f'| all 11 convs | {sums[0]:.0f} | {sums[1]:.0f} | {sums[2]:.0f} | x{min(sums[1], sums[2]) / sums[0]:.2f} |')


if __name__ == '__main__':
    sys.exit(main())
