#!/usr/bin/env python
"""The Lucid workload, jaxvis against Lucent: block4_conv1 filters 0-3, 128x128, 256 steps, Lucid's defaults
(Fourier + decorrelated colour, standard transforms, Adam 0.05), the same weights, one after the other.

    python scripts/lucid_workload.py --lucent ~/lucent-venv/bin/python [--weights PATH] [--ablate] [--width 4] [--bf16 8 4] [--lucid-sizes]

jaxvis runs ``preset('lucid', redirect_relu_steps=0, restarts=(), rescue=False, fixed_image_size=size)`` (Lucid's
recipe without jaxvis's dead-filter rule; the transformed image resized to ``size`` before the network, as Lucent's
``fixed_image_size=size``) twice: the first call includes compiling, the second reuses it. Lucent runs
``scripts/lucent_peer.py`` (one call per filter, and all filters in one batch) with that interpreter.
Every final image is scored by the same code, :func:`jaxvis.metrics.channel_means` of the image itself
(no transform), so ``activation`` compares the two tools' pictures on one ruler. ``--ablate`` also times
jaxvis without the transforms (at the size given and at the 12 px larger size the transforms hand the
network), with pixels in place of the Fourier param, and with plain gradient ascent in place of Adam
(compiled calls), to show where the time goes. ``--bf16 W ...`` adds the same recipe with the network in
bf16 (``dtype='bfloat16'``: params, image and Adam's update stay float32) at those group widths; the
activation column scores its images with the float32 network like every other row. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import jaxvis
from jaxvis import metrics, optim
from jaxvis import param as P
from jaxvis import transforms as T
from jaxvis.edge.weights import resolve
from jaxvis.visualize import preset, visualize_filters

HERE = os.path.dirname(os.path.abspath(__file__))


def activation(params, layer: str, images: np.ndarray, filters: list[int]) -> np.ndarray:
    """Each image's own filter's mean activation, images RGB 0..255 ``[F, H, W, 3]``."""
    means = metrics.channel_means(params, layer, np.clip(images, 0.0, 255.0))
    return np.asarray(metrics.activation(means, np.asarray(filters)))


def timed(params, layer, filters, cfg, size, key, width=None):
    t = time.perf_counter()
    r = visualize_filters(params, layer, filters, cfg, size=size, key=key, width=width)
    return r, time.perf_counter() - t


def ablation(params, layer, filters, cfg, size, key, label, width=None):
    """One row: ``cfg`` compiled by a first call, then timed."""
    timed(params, layer, filters, cfg, size, key, width)  # compile
    r, s = timed(params, layer, filters, cfg, size, key, width)
    return label, s, activation(params, layer, r.images, filters)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--lucent', metavar='PYTHON', default=None, help='a Python with torch-lucent')
    ap.add_argument('--weights', default=None)
    ap.add_argument('--layer', default='block4_conv1')
    ap.add_argument('--filters', default='0,1,2,3')
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--steps', type=int, default=256)
    ap.add_argument('--ablate', action='store_true')
    ap.add_argument('--width', type=int, nargs='*', default=[],
                    help="also jaxvis's lucid at these group widths (visualize_filters' width=, default 8)")
    ap.add_argument('--lucent-modes', default=None,
                    help="lucent_peer.py's --modes (default: sequential,batched,batched_channels_last)")
    ap.add_argument('--skip-default', action='store_true', help='no rows at the default width (only --width/--bf16)')
    ap.add_argument('--lucid-sizes', action='store_true',
                    help="also jaxvis's lucid without the fixed size (Lucid's own: the network sees size + 12 px)")
    ap.add_argument('--bf16', type=int, nargs='*', default=[], metavar='WIDTH',
                    help="also jaxvis's lucid with the network in bf16 at these group widths")
    a = ap.parse_args(argv)
    filters = [int(f) for f in a.filters.split(',')]
    params = jaxvis.load_keras_h5(resolve('vgg16', a.weights))
    key = jax.random.key(0)
    # fixed_image_size: the network sees a.size px, as Lucent's render_vis(fixed_image_size=a.size) does
    lucid = preset('lucid', steps=a.steps, redirect_relu_steps=0, restarts=(), rescue=False, fixed_image_size=a.size)
    lucid_own = preset('lucid', steps=a.steps, redirect_relu_steps=0, restarts=(), rescue=False)
    rows = []
    if not a.skip_default:
        r, first = timed(params, a.layer, filters, lucid, a.size, key)
        _, second = timed(params, a.layer, filters, lucid, a.size, key)
        act = activation(params, a.layer, r.images, filters)
        rows.append(('jaxvis lucid, first call (compile included)', first, act))
        rows.append(('jaxvis lucid, compiled', second, act))
    for w in a.width:
        rows.append(ablation(params, a.layer, filters, lucid, a.size, key, f'jaxvis lucid, compiled, width {w}', w))
    if a.lucid_sizes:
        for w in a.width or [None]:
            rows.append(ablation(params, a.layer, filters, lucid_own, a.size, key,
                                 f'jaxvis lucid, no fixed size (the network sees {a.size + 12} px), compiled'
                                 + (f', width {w}' if w else ''), w))
    for w in a.bf16:
        rows.append(ablation(params, a.layer, filters, dataclasses.replace(lucid, dtype='bfloat16'), a.size, key,
                             f'jaxvis lucid, bf16 network, compiled, width {w}', w))
    if a.ablate:
        for label, cfg in (('jaxvis lucid, no transforms', dataclasses.replace(lucid, transform=T.identity())),
                           ('jaxvis lucid, pixel param (no FFT)', dataclasses.replace(lucid, param=P.image(fft=False))),
                           ('jaxvis lucid, ascent in place of Adam', dataclasses.replace(lucid, optimizer=optim.ascent(0.05)))):
            rows.append(ablation(params, a.layer, filters, cfg, a.size, key, label))
        # The standard transforms hand the network a larger image (pad 24, crops 12: +12 px, 6 a side);
        # the same image size without them separates the transforms' own cost from the larger forward.
        side = a.size + 12
        rows.append(ablation(params, a.layer, filters, dataclasses.replace(lucid, transform=T.identity()), side, key,
                             f'jaxvis lucid, no transforms, {side} px (the size the transforms hand the network)'))
    if a.lucent:
        with tempfile.TemporaryDirectory() as tmp:
            w = os.path.join(tmp, 'w.npz')
            np.savez(w, **{f'{k}/{n}': np.asarray(v[n]) for k, v in params.items() for n in ('kernel', 'bias')})
            out = os.path.join(tmp, 'images.npz')
            done = subprocess.run([a.lucent, os.path.join(HERE, 'lucent_peer.py'), '--weights', w, '--layer', a.layer,
                                   '--filters', a.filters, '--size', str(a.size), '--steps', str(a.steps),
                                   '--out', out] + (['--modes', a.lucent_modes] if a.lucent_modes else []),
                                  capture_output=True, text=True, check=False)
            if done.returncode:   # jaxvis's rows are still printed
                sys.stderr.write(done.stderr[-2000:])
            else:
                info = json.loads(done.stdout.strip().splitlines()[-1])
                images = np.load(out)
                for mode, s in info['seconds'].items():
                    rows.append((f'Lucent (torch {info["torch"]}, {info["threads"]} threads), {mode}', s,
                                 activation(params, a.layer, images[mode] * 255.0, filters)))
    print(f'{a.layer} filters {a.filters}, {a.size}x{a.size}, {a.steps} steps')
    print('| run | seconds | mean activation | per filter |\n| --- | --- | --- | --- |')
    for label, s, act in rows:
        print(f'| {label} | {s:.1f} | {float(np.mean(act)):.1f} | {", ".join(f"{v:.1f}" for v in act)} |')
    return 1 if a.lucent and done.returncode else 0


if __name__ == '__main__':
    raise SystemExit(main())
