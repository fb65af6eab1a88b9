#!/usr/bin/env python
"""Compile time of one ``jaxvis`` CLI command, cold and on reruns (issue 13, item 6).

Runs the command ``--runs`` times, each in a fresh process, all sharing one fresh jaxvis cache folder
(``JAXVIS_CACHE``; a user's ``JAX_COMPILATION_CACHE_DIR``/``JAXVIS_COMPILE_CACHE`` are dropped), so the
first run is a first-ever run on this machine (no convolution plan, no compile cache) and later runs find
both. ``--weights`` is resolved before the cache folder is swapped, so the weights are not fetched again;
``filters``/``atlas`` get an ``--out`` in the temporary folder unless given one. Per run: ``process``, the
whole process's wall seconds (interpreter start and imports included), ``wall``, the command's own inside
it, and ``jax.monitoring``'s compile events summed (XLA compile, cache loads included; tracing; lowering;
cache retrieval). ``--top N`` adds each run's N functions that took longest (tracing, lowering and compiling summed).
``--plan-known`` empties the compile cache after the cold run, once: the second run then
compiles everything with the convolution plan already measured (a new job on a machine that ran one).
``--plan FILE`` starts the cache folder with that convolution plan (a ``tune.json`` kept by an earlier
run, e.g. ``~/.cache/jaxvis/tune.json``): every run then compiles the same plan, so two versions of the
code can be compared without the plan's near ties falling differently in each cold run.

  python scripts/compile_time.py -- filters --layer block5_conv1 --filters 0:8 --steps 2
  python scripts/compile_time.py --plan-known -- filters --layer block5_conv1 --filters 0:8 --steps 2
  python scripts/compile_time.py --plan ~/.cache/jaxvis/tune.json -- filters --layer block5_conv1 --filters 0:8
  python scripts/compile_time.py --runs 2 -- filters --layer block4_conv1 --filters 0:8 --steps 2 --preset lucid
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

EVENTS = {'/jax/core/compile/backend_compile_duration': 'xla_compile',
          '/jax/core/compile/jaxpr_trace_duration': 'tracing',
          '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lowering',
          '/jax/compilation_cache/cache_retrieval_time_sec': 'cache_read'}


def child(args: list[str], top: int) -> int:
    """In the child process: run the CLI, then print one line of sums (and, with ``top``, a line of the
    ``top`` functions that took longest to trace + compile)."""
    from jax import monitoring

    totals, per_fun = collections.Counter(), collections.Counter()

    def listen(event, duration, fun_name=None, **kw):
        totals[event] += duration
        if fun_name and event in EVENTS:
            per_fun[fun_name] += duration
    monitoring.register_event_duration_secs_listener(listen)
    from jaxvis.cli import main

    t = time.perf_counter()
    rc = main(args)
    wall = time.perf_counter() - t
    parts = ' '.join(f'{name} {totals[event]:.2f}' for event, name in EVENTS.items())
    sys.stderr.write(f'compile_time: rc {rc} wall {wall:.2f} {parts}\n')
    if top:
        sys.stderr.write('compile_top: ' + ', '.join(f'{f} {d:.2f}' for f, d in per_fun.most_common(top)) + '\n')
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3, help='runs in one fresh cache folder (the first is cold)')
    ap.add_argument('--plan-known', action='store_true',
                    help='empty the compile cache after the cold run (the second run: plan measured, nothing compiled)')
    ap.add_argument('--plan', help="start with this convolution plan (a kept tune.json): the same plan in every run")
    ap.add_argument('--top', type=int, default=0, help="also print each run's N slowest functions to compile")
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('command', nargs=argparse.REMAINDER, help='the jaxvis arguments, after --')
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ['--'] else a.command
    if not cmd:
        ap.error('give the jaxvis command after --, e.g. -- filters --layer block5_conv1 --filters 0:8')
    if a.child:
        return child(cmd, a.top)
    given = {c.split('=', 1)[0] for c in cmd}
    if '--weights' not in given and cmd[0] in ('filters', 'atlas', 'dream'):
        from jaxvis.edge.weights import resolve

        model = next((c.split('=', 1)[1] for c in cmd if c.startswith('--model=')), None)
        if '--model' in cmd[:-1]:
            model = cmd[cmd.index('--model') + 1]
        cmd += ['--weights', str(resolve(model or 'vgg16', progress=False))]
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k not in ('JAX_COMPILATION_CACHE_DIR', 'JAXVIS_COMPILE_CACHE')}
        env['JAXVIS_CACHE'] = os.path.join(cache, 'jaxvis')
        if a.plan:
            os.makedirs(env['JAXVIS_CACHE'])
            shutil.copyfile(os.path.expanduser(a.plan), os.path.join(env['JAXVIS_CACHE'], 'tune.json'))
        for run in range(a.runs):
            own_out = '--out' not in given and cmd[0] in ('filters', 'atlas')
            out = ['--out', os.path.join(cache, f'out{run}')] if own_out else []
            t = time.perf_counter()
            p = subprocess.run([sys.executable, __file__, '--child', '--top', str(a.top), '--', *cmd, *out], env=env,
                               capture_output=True, text=True)
            process = time.perf_counter() - t
            line = [ln for ln in p.stderr.splitlines() if ln.startswith('compile_time:')]
            if p.returncode or not line:
                sys.stderr.write(p.stderr[-2000:])
                return p.returncode or 1
            if run == 0 and a.plan_known:
                shutil.rmtree(os.path.join(cache, 'jaxvis', 'xla'))
            label = 'cold ' if run == 0 else 'plan ' if run == 1 and a.plan_known else 'rerun'
            print(f'{label} process {process:.2f} {line[0][len("compile_time: "):]}')
            for top in (ln for ln in p.stderr.splitlines() if ln.startswith('compile_top:')):
                print('     ', top)
    return 0


if __name__ == '__main__':
    sys.exit(main())
