#!/usr/bin/env python
"""Compile time of one ``jaxvis`` CLI command, cold and on reruns (issue 13, item 6).

Runs the command ``--runs`` times, each in a fresh process, all sharing one fresh ``XDG_CACHE_HOME``
(so the first run is a first-ever run on this machine: no convolution plan, no compile cache, and later
runs find both). ``--weights`` is resolved before the cache folder is swapped, so the HED weights are not
extracted again. Per run: wall seconds of the command inside its process, and ``jax.monitoring``'s
compile events summed (XLA compile, cache loads included; tracing; lowering; cache retrieval).

  python scripts/compile_time.py -- filters --layer block5_conv1 --filters 0:8 --steps 2
  python scripts/compile_time.py --runs 2 -- filters --layer block4_conv1 --filters 0:8 --steps 2 --preset lucid
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

EVENTS = {'/jax/core/compile/backend_compile_duration': 'xla_compile',
          '/jax/core/compile/jaxpr_trace_duration': 'tracing',
          '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lowering',
          '/jax/compilation_cache/cache_retrieval_time_sec': 'cache_read'}


def child(args: list[str]) -> int:
    """In the child process: run the CLI, then print one line of sums."""
    from jax import monitoring

    totals = collections.Counter()
    monitoring.register_event_duration_secs_listener(lambda event, duration, **kw: totals.update({event: duration}))
    from jaxvis.cli import main

    t = time.perf_counter()
    rc = main(args)
    wall = time.perf_counter() - t
    parts = ' '.join(f'{name} {totals[event]:.2f}' for event, name in EVENTS.items())
    sys.stderr.write(f'compile_time: rc {rc} wall {wall:.2f} {parts}\n')
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3, help='runs in one fresh cache folder (the first is cold)')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('command', nargs=argparse.REMAINDER, help='the jaxvis arguments, after --')
    a = ap.parse_args()
    cmd = [c for c in a.command if c != '--'] if a.command[:1] == ['--'] else a.command
    if a.child:
        return child(cmd)
    if '--weights' not in cmd:
        from jaxvis.edge.weights import resolve

        model = cmd[cmd.index('--model') + 1] if '--model' in cmd else 'vgg16'
        cmd += ['--weights', str(resolve(model, progress=False))]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        for run in range(a.runs):
            out = os.path.join(cache, f'out{run}')
            p = subprocess.run([sys.executable, __file__, '--child', '--', *cmd, '--out', out], env=env,
                               capture_output=True, text=True)
            line = [ln for ln in p.stderr.splitlines() if ln.startswith('compile_time:')]
            if p.returncode or not line:
                sys.stderr.write(p.stderr[-2000:])
                return p.returncode or 1
            print(f'{"cold " if run == 0 else "rerun"} {line[0][len("compile_time: "):]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
