#!/usr/bin/env python
"""Throughput of the filter engine on the seed job (VGG16 block5_conv1, 128x128, preset 'seed').

For each batch size, ``visualize_filters`` is called once to warm up and then ``--repeats`` times; each
call is timed end to end, and the JAX compile time inside it (tracing, lowering, XLA compile: the engine
jits its step afresh on every call) is read from ``jax.monitoring`` and taken out. Reported per batch size:

  filter_steps_per_s   median over repeats of N * steps / (wall - compile)
  gflops               filter_steps_per_s * 18.84 GFLOP (at 128x128: 4.709 GMAC forward to block5_conv1,
                       the same again for the input gradient; no weight gradients; scales with size^2)
  speedup              ratio to the baseline measured in the same run: batch size 1, one filter at a time
                       through the same code (as seed 003 does)
  compile_s            compile time of the warm-up call (tracing, lowering, XLA); the timed calls reuse it
                       through a persistent compilation cache in a temporary folder
  cpu_s_per_filter_step process CPU seconds per filter-step, compile time taken out (compiling is about
                       single-threaded); robust to other load on a shared machine: 2 cores / this = the
                       throughput an idle 2-core machine could reach
  peak_rss_mb / peak_device_mb  peak host RSS during the calls (CPU) / device peak bytes in use (GPU)

Random weights of the real shapes are used unless --weights is given (speed does not depend on them);
``--model resnet50 --layer conv4_block6_out`` and ``--model inception_v3 --layer mixed7`` work too.

``--torch PYTHON`` also runs the PyTorch peer (``scripts/torch_peer.py``, the same job in PyTorch, NCHW
and channels_last at batch 8/16/32) with that interpreter, once before and once after jaxvis's rows,
and reports jaxvis's best configuration against the peer's best (the better of its two runs per
configuration), measured in this same run.

  python scripts/benchmark.py --n 16 --batch-sizes 1,8,16 --repeats 3 --steps 5
  python scripts/benchmark.py --n 64 --batch-sizes 1,8,32,64 --json > gpu.json   # on a GPU machine
  python scripts/benchmark.py --n 32 --batch-sizes 8,32 --baseline-n 0 --torch ~/torch-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from jaxvis.models import get_model, load_keras_h5
from jaxvis.models.vgg import BLOCKS, layer_table
from jaxvis.visualize import preset, visualize_filters

GFLOP_PER_FILTER_STEP_128 = 18.84
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration', '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_compile_s = [0.0]


def _on_event(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _compile_s[0] += duration


def random_params(spec, layer: str, seed: int = 0) -> dict:
    """He-scaled random ``{conv: {'kernel', 'bias'}}`` float32 for a VGG's convs up to ``layer``."""
    rng = np.random.default_rng(seed)
    params, c_in = {}, 3
    for name, kind, width, _ in layer_table(BLOCKS[spec.name]):
        if kind == 'conv':
            k = rng.standard_normal((3, 3, c_in, width), dtype=np.float32) * np.float32((2 / (9 * c_in)) ** .5)
            params[name] = {'kernel': k, 'bias': rng.standard_normal(width, dtype=np.float32) * np.float32(0.1)}
            c_in = width
        if name == layer:
            return params
    return params


def machine() -> dict:
    """Where the numbers came from: CPU model and cores, JAX version, devices."""
    info = {'jax': jax.__version__, 'python': platform.python_version(), 'backend': jax.default_backend(),
            'devices': [str(d.device_kind) for d in jax.local_devices()], 'os_cpus': os.cpu_count()}
    try:
        import jaxlib
        info['jaxlib'] = jaxlib.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=10).stdout
        rows = dict(line.split(':', 1) for line in out.splitlines() if ':' in line)
        info['cpu'] = rows.get('Model name', '').strip()
        info['cores_per_socket'] = rows.get('Core(s) per socket', '').strip()
        info['sockets'] = rows.get('Socket(s)', '').strip()
        flags = rows.get('Flags', '')
        info['simd'] = [f for f in ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_bf16') if f' {f}' in f' {flags}']
    except (OSError, subprocess.SubprocessError):
        pass
    info['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '')
    return info


def _reset_peak_rss() -> None:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_device_mb() -> float | None:
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    peaks = [s.get('peak_bytes_in_use') for s in stats if s.get('peak_bytes_in_use') is not None]
    return max(peaks) / 2 ** 20 if peaks else None


def run_config(params, args, n: int, bs: int, drop_dead: bool = False) -> dict:
    """Warm-up plus ``args.repeats`` timed calls of visualize_filters for ``n`` filters at batch ``bs``."""
    options = {'conv': args.conv} if args.model in BLOCKS else {}  # the Keras applications have no conv plan
    kw = dict(model=get_model(args.model, **options), size=args.size, batch_size=bs,
              key=jax.random.key(args.seed), devices=args.devices, drop_dead=drop_dead, width=args.width)
    cfg = preset('seed', steps=args.steps, dtype=args.dtype)
    filters = list(range(n))
    _reset_peak_rss()
    walls, compiles, cpus, result, first_compile = [], [], [], None, 0.0
    for r in range(args.repeats + 1):
        _compile_s[0] = 0.0
        c0, t0 = time.process_time(), time.perf_counter()
        result = visualize_filters(params, args.layer, filters, cfg, **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if r == 0:  # the warm-up: a real compile; later calls load it from the persistent cache
            first_compile = _compile_s[0]
        else:
            walls.append(wall)
            compiles.append(_compile_s[0])
            cpus.append(cpu)
    fs = n * args.steps
    rates = [fs / max(w - c, 1e-9) for w, c in zip(walls, compiles)]
    rate = statistics.median(rates)
    return {
        'n': n, 'batch_size': bs, 'width': args.width, 'steps': args.steps, 'repeats': args.repeats, 'drop_dead': drop_dead,
        'filter_steps_per_s': rate, 'filter_steps_per_s_runs': rates,
        'gflops': rate * GFLOP_PER_FILTER_STEP_128 * (args.size / 128) ** 2 if args.layer == 'block5_conv1' else None,
        'compile_s': first_compile, 'wall_s': statistics.median(walls),
        'cpu_s_per_filter_step': statistics.median(max(u - c, 0.0) for u, c in zip(cpus, compiles)) / fs,
        'peak_rss_mb': _peak_rss_mb(), 'peak_device_mb': _peak_device_mb(),
        'dead': int(result.dead.sum()), 'mean_final_objective': float(result.losses.mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--n', type=int, default=16, help='filters per timed call (default 16)')
    ap.add_argument('--batch-sizes', default='8,16', help='comma-separated batch sizes (default 8,16)')
    ap.add_argument('--baseline-n', type=int, default=None,
                    help='filters for the one-at-a-time baseline (default min(n, 4)); 0 skips it')
    ap.add_argument('--repeats', type=int, default=3, help='timed calls after one warm-up (default 3)')
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
    ap.add_argument('--conv', choices=('auto', 'direct', 'winograd2', 'winograd4', 'onednn'), default='auto',
                    help="convolution algorithms (default 'auto': jaxvis.backend.conv_plan)")
    ap.add_argument('--layer', default='block5_conv1')
    ap.add_argument('--model', default='vgg16')
    ap.add_argument('--weights', default=None, help='a Keras .h5; default: random weights of the same shapes')
    ap.add_argument('--devices', choices=('all', 'one'), default='all',
                    help="'all' local devices (the engine's default) or only the first")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--width', type=int, default=None,
                    help="visualize_filters' CPU group width (default: the engine's, 8)")
    ap.add_argument('--drop-dead', action='store_true',
                    help='also time each batch size with dead filters dropped after step 1 (filter-steps/s then '
                         'counts the steps the dead filters skip as done)')
    ap.add_argument('--torch', metavar='PYTHON', default=None,
                    help='a Python with torch: also run scripts/torch_peer.py before and after, in this run')
    ap.add_argument('--torch-batch-sizes', default='8,16,32')
    ap.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error('--repeats must be >= 1')
    args.devices = 'all' if args.devices == 'all' else jax.local_devices()[:1]

    spec = get_model(args.model)
    if args.weights:
        params = load_keras_h5(args.weights, model=args.model if args.model not in BLOCKS else None)
    elif args.model in BLOCKS:
        params = random_params(spec, args.layer)
    else:  # resnet50, inception_v3: the module's own random init (speed does not depend on the weights)
        params = jax.device_get(spec.init(jax.random.key(args.seed)))
    jax.monitoring.register_event_duration_secs_listener(_on_event)
    # The engine jits afresh on every call: with a persistent cache the timed calls skip XLA compilation,
    # so their CPU time is (nearly) all stepping. The warm-up call's compile time is the one reported.
    cache = tempfile.mkdtemp(prefix='jaxvis-bench-cache-')
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
    out = {'machine': machine(), 'args': {k: (v if isinstance(v, (str, int, float, type(None))) else str(v))
                                          for k, v in vars(args).items()}, 'loadavg_start': os.getloadavg()}
    peer = [torch_peer(args)] if args.torch else []
    base_n = min(args.n, 4) if args.baseline_n is None else args.baseline_n
    out['baseline'] = run_config(params, args, base_n, 1) if base_n else None
    rows = []
    for bs in (int(b) for b in args.batch_sizes.split(',')):
        for drop in (False, True) if args.drop_dead else (False,):
            row = run_config(params, args, args.n, min(bs, args.n), drop)
            if out['baseline']:
                row['speedup'] = row['filter_steps_per_s'] / out['baseline']['filter_steps_per_s']
            rows.append(row)
            if not args.json:
                print(f"batch {row['batch_size']:4d}{' drop-dead' if drop else ''}: "
                      f"{row['filter_steps_per_s']:7.2f} filter-steps/s", file=sys.stderr)
    out['results'] = rows
    if args.torch:
        peer.append(torch_peer(args))
        out['torch'] = compare(rows, peer)
    out['loadavg_end'] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        _table(out)
    return 0


def torch_peer(args) -> dict:
    """One run of scripts/torch_peer.py with ``args.torch`` (same size and steps as jaxvis's rows)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torch_peer.py')
    cmd = [args.torch, script, '--batch-sizes', args.torch_batch_sizes, '--size', str(args.size),
           '--steps', str(args.steps), '--repeats', str(args.repeats)] + (['--bf16'] if args.dtype == 'bfloat16' else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f'benchmark: the torch peer failed: {proc.stderr.strip().splitlines()[-1:]}')
    return json.loads(proc.stdout)


def compare(rows: list[dict], peer: list[dict]) -> dict:
    """jaxvis's best row against the peer's best configuration (each the better of its two runs)."""
    best: dict[tuple, float] = {}
    for run in peer:
        for r in run['results']:
            k = (r['layout'], r['batch'], r['dtype'])
            best[k] = max(best.get(k, 0.0), r['filter_steps_per_s'])
    (layout, batch, dtype), rate = max(best.items(), key=lambda kv: kv[1])
    ours = max(rows, key=lambda r: r['filter_steps_per_s'])
    return {'version': peer[0]['torch'], 'threads': peer[0]['threads'], 'runs': peer,
            'best': {'layout': layout, 'batch': batch, 'dtype': dtype, 'filter_steps_per_s': rate},
            'jaxvis_best': {'batch_size': ours['batch_size'], 'filter_steps_per_s': ours['filter_steps_per_s']},
            'ratio': ours['filter_steps_per_s'] / rate}


def _table(out: dict) -> None:
    m = out['machine']
    print(f"{m.get('cpu', '?')} ({m.get('os_cpus')} CPUs), jax {m['jax']}, {m['backend']}: {', '.join(m['devices'])}")
    print(f"load average at start {out['loadavg_start'][0]:.1f}, at end {out['loadavg_end'][0]:.1f}")
    print(f"{'config':>21} {'f-steps/s':>10} {'GFLOP/s':>8} {'x base':>7} {'compile s':>9} {'CPU s/f-step':>12} "
          f"{'peak MB':>8} {'dead':>5}")
    rows = ([('baseline bs=1', out['baseline'])] if out['baseline'] else []) + [
        (f"n={r['n']} bs={r['batch_size']}{' drop' if r['drop_dead'] else ''}", r) for r in out['results']]
    for name, r in rows:
        mem = r['peak_device_mb'] if r['peak_device_mb'] is not None else r['peak_rss_mb']
        print(f"{name:>21} {r['filter_steps_per_s']:10.2f} {r['gflops'] or float('nan'):8.1f} "
              f"{r.get('speedup', 1.0):7.2f} {r['compile_s']:9.2f} {r['cpu_s_per_filter_step']:12.3f} {mem:8.0f} "
              f"{r['dead']:5d}")
    if 'torch' in out:
        t = out['torch']
        for (layout, batch, dtype) in sorted({(r['layout'], r['batch'], r['dtype']) for run in t['runs']
                                              for r in run['results']}):
            rates = [r['filter_steps_per_s'] for run in t['runs'] for r in run['results']
                     if (r['layout'], r['batch'], r['dtype']) == (layout, batch, dtype)]
            label = f"torch {layout} bs={batch}" + ('' if dtype == 'float32' else f' {dtype}')
            print(f"{label:>21} {max(rates):10.2f}   (runs before/after: "
                  f"{', '.join(f'{v:.2f}' for v in rates)})")
        b = t['best']
        print(f"jaxvis best (batch {t['jaxvis_best']['batch_size']}) / torch {t['version']} best ({b['layout']}, "
              f"batch {b['batch']}, {b['dtype']}): {t['ratio']:.2f}x")


if __name__ == '__main__':
    sys.exit(main())
