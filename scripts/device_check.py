#!/usr/bin/env python
"""One prepared check of jaxvis on an accelerator (a lent NVIDIA GPU): speed, memory and agreement with
the CPU, written to one JSON file. Runs from the source tree with the packages already on that machine
(jax with its CUDA plugin, flax, optax, h5py, pillow); nothing is installed and nothing is downloaded.

  PYTHONPATH=. python scripts/device_check.py --out device_check.json     # on the GPU machine, < 10 min
  PYTHONPATH=. python scripts/device_check.py --dry-run --out /tmp/x.json  # the same code, CPU, small sizes

What it runs (random VGG16 weights of the real shapes unless --weights; speed does not depend on them):

1. The seed job: 512 filters of block5_conv1, 128 px, 20 steps, every filter computed, once in JAX's
   default GPU precision (float32 storage, TF32 convolutions and matmuls on NVIDIA Ampere and newer: a
   10-bit mantissa, about 1e-3 relative error per product) and once with ``dtype='bfloat16'`` (the network in
   bf16: an 8-bit mantissa, about 4e-3 relative; params, image and update stay float32). Our target: 512
   filters x 20 steps in at most 1 s (about 190 TFLOP).
2. The ``lucid`` preset on 64 filters, with the preset's own step count.
3. A 2048x2048 DeepDream (the default config: 4 octaves of block4_conv3, 512 px tiles).
4. The check: 8 filters of block5_conv1 on the accelerator at ``precision='highest'`` (true float32)
   against the same 8 on the CPU, 20 steps. After 20 steps of ascent, last-bit differences grow, so the
   tolerance is on the result, not the bits: final objectives within 2% (relative) and images within
   2 grey levels on average. The JSON says whether it passed, with the numbers.

Each timed row is run twice; the first call compiles (its seconds are reported as ``compile_s``), the second
is timed. Peak memory: ``memory_stats()['peak_bytes_in_use']`` of the device (GPU), else the process's
peak RSS.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import time

import jax
import numpy as np

from jaxvis import DreamConfig, deepdream, preset, visualize_filters
from jaxvis.dream.config import layer_objective
from jaxvis.models import load_keras_h5
from jaxvis.models.vgg import VGG16_BLOCKS, layer_table

FULL = {'layer': 'block5_conv1', 'n': 512, 'size': 128, 'steps': 20, 'lucid_n': 64, 'dream': 2048, 'tile': 512,
        'check_n': 8, 'dream_config': {}}
DRY = {'layer': 'block1_conv2', 'n': 16, 'size': 32, 'steps': 2, 'lucid_n': 8, 'dream': 64, 'tile': 32,
       'check_n': 8, 'dream_config': {'objective': layer_objective('block1_conv2'), 'octaves': 2, 'steps': 2}}
TOLERANCE = {'objective_rel': 0.02, 'mean_abs_grey': 2.0}


def random_params(seed: int = 0) -> dict:
    """He-scaled random VGG16 conv params (float32), ``{conv: {'kernel': [3,3,Cin,Cout], 'bias': [Cout]}}``."""
    rng = np.random.default_rng(seed)
    params, c_in = {}, 3
    for name, kind, width, _ in layer_table(VGG16_BLOCKS):
        if kind == 'conv':
            k = rng.standard_normal((3, 3, c_in, width), dtype=np.float32) * np.float32((2 / (9 * c_in)) ** .5)
            params[name] = {'kernel': k, 'bias': rng.standard_normal(width, dtype=np.float32) * np.float32(0.1)}
            c_in = width
    return params


def peak_bytes(device) -> int:
    stats = {}
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory stats
        pass
    if 'peak_bytes_in_use' in stats:
        return int(stats['peak_bytes_in_use'])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn) -> tuple[float, float, object]:
    """``(first call s (compiles), second call s, second result)``."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    t1 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return t1 - t0, time.perf_counter() - t1, out


def filters_row(params, s: dict, name: str, cfg, n: int, device) -> dict:
    run = lambda: visualize_filters(params, s['layer'], range(n), cfg, size=s['size'], key=jax.random.key(0),
                                    devices=[device]).losses
    first, second, losses = timed(run)
    steps = cfg.steps
    return {'job': name, 'filters': n, 'steps': steps, 'size': s['size'], 'layer': s['layer'], 'dtype': cfg.dtype,
            'compile_s': round(first - second, 3), 'seconds': round(second, 3),
            'filter_steps_per_s': round(n * steps / second, 1), 'mean_objective': float(np.mean(losses))}


def dream_row(params, s: dict, device) -> dict:
    img = np.asarray(jax.image.resize(jax.random.uniform(jax.random.key(1), (16, 16, 3)) * 255.0,
                                      (s['dream'], s['dream'], 3), 'cubic'))
    cfg = DreamConfig(tile_size=s['tile'], **s['dream_config'])
    with jax.default_device(device):
        first, second, _ = timed(lambda: deepdream(params, img, cfg, key=jax.random.key(0)).image)
    return {'job': f'deepdream {s["dream"]}x{s["dream"]}', 'octaves': cfg.octaves, 'steps': cfg.steps,
            'tile': s['tile'], 'compile_s': round(max(0.0, first - second), 3), 'seconds': round(second, 3)}


def check_row(params, s: dict, device) -> dict:
    cfg = preset('seed', steps=s['steps'])
    run = lambda dev: visualize_filters(params, s['layer'], range(s['check_n']), cfg, size=s['size'],
                                        key=jax.random.key(0), devices=[dev])
    with jax.default_matmul_precision('highest') if device.platform != 'cpu' else contextlib.nullcontext():
        acc = run(device)  # (XLA:CPU is float32 throughout: the dry run reuses the seed job's compiled step)
    cpu = run(jax.devices('cpu')[0])
    rel = float(np.max(np.abs(acc.losses - cpu.losses) / np.maximum(np.abs(cpu.losses), 1e-6)))
    grey = np.abs(np.clip(acc.images, 0, 255) - np.clip(cpu.images, 0, 255))
    ok = rel <= TOLERANCE['objective_rel'] and float(grey.mean()) <= TOLERANCE['mean_abs_grey']
    return {'job': f'check: {s["check_n"]} filters, accelerator (precision highest) vs CPU', 'steps': cfg.steps,
            'objective_max_rel_diff': rel, 'mean_abs_grey': float(grey.mean()), 'max_abs_grey': float(grey.max()),
            'tolerance': TOLERANCE, 'passed': bool(ok)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='device_check.json', help='the JSON file written (default device_check.json)')
    ap.add_argument('--dry-run', action='store_true', help='the same code on the CPU at small sizes')
    ap.add_argument('--weights', default=None, help='a VGG16 Keras .h5 (default: random weights of the real shapes)')
    args = ap.parse_args(argv)
    s = DRY if args.dry_run else FULL
    device = jax.devices('cpu')[0] if args.dry_run else jax.devices()[0]
    if not args.dry_run and device.platform == 'cpu':
        sys.stderr.write('device_check: no accelerator here (use --dry-run for the CPU check of the script)\n')
        return 2
    params = load_keras_h5(args.weights) if args.weights else random_params()
    t0 = time.perf_counter()
    rows = [filters_row(params, s, 'seed job, default precision', preset('seed', steps=s['steps']), s['n'], device),
            filters_row(params, s, 'seed job, bf16', preset('seed', steps=s['steps'], dtype='bfloat16'), s['n'],
                        device),
            filters_row(params, s, 'lucid preset', preset('lucid', steps=None if s is FULL else s['steps']),
                        s['lucid_n'], device),
            dream_row(params, s, device), check_row(params, s, device)]
    report = {'dry_run': args.dry_run, 'device': device.device_kind, 'platform': device.platform,
              'devices': len(jax.devices()), 'jax': jax.__version__, 'python': platform.python_version(),
              'weights': args.weights or 'random (He-scaled, seed 0)', 'rows': rows,
              'peak_memory_bytes': peak_bytes(device), 'total_s': round(time.perf_counter() - t0, 1)}
    tmp = f'{args.out}.part'
    with open(tmp, 'w') as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, args.out)
    for row in rows:
        print(json.dumps(row))
    return 0 if rows[-1]['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
