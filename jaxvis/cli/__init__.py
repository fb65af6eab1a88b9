"""The ``jaxvis`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``.

Errors the user can fix (JaxvisError) print one line and exit 2; Ctrl-C prints one line and exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

from jaxvis.edge import cluster, supervise
from jaxvis.errors import JaxvisError

# subcommand name -> module under jaxvis.cli
COMMANDS = {
    'layers': 'layers',
    'filters': 'filters',
    'dream': 'dream',
    'weights': 'weights_cmd',
    'tune': 'tune_cmd',
    'classify': 'classify',
    'atlas': 'atlas',
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints usage too)
        sys.stderr.write(f'{self.prog}: error: {message}\n')
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog='jaxvis', description='See what the filters of a convolutional network respond to.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=_Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f'jaxvis.cli.{module}')
        except ModuleNotFoundError as e:
            if e.name != f'jaxvis.cli.{module}':
                raise
            continue
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        req = cluster.request(args) if hasattr(args, 'coordinator') else None
    except JaxvisError as e:
        sys.stderr.write(f'jaxvis: error: {e}\n')
        return 2
    if req is None:
        return _run(args)
    if not supervise.is_child():  # the launcher: the work runs in a watched child (see jaxvis.edge.supervise)
        return supervise.run_child(sys.argv[1:] if argv is None else list(argv), req)
    try:
        rc = _run(args, req)
    except BaseException:  # noqa: BLE001 - a crash: its traceback, then out (see below)
        traceback.print_exc()
        rc = 1
    if rc != 0:  # a failed worker leaves at once: JAX's exit would wait for peers that will not come
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _run(args: argparse.Namespace, req: cluster.Request | None = None) -> int:
    try:
        if req is not None:
            cluster.join(req)
        return int(args.run(args) or 0)
    except JaxvisError as e:
        sys.stderr.write(f'jaxvis: error: {e}\n')
        return 2
    except Exception as e:  # XLA out of memory on a size the up-front estimate let through: one line too
        if req is not None and 'Gloo' in str(e):  # a peer left during a collective: the runtime, which
            time.sleep(2 * req.peer_timeout + 5)  # names it, ends this process within the peer timeout
            sys.stderr.write('jaxvis: error: a peer process left the run\n')
            return 2
        if 'RESOURCE_EXHAUSTED' not in str(e):
            raise
        sys.stderr.write(f'jaxvis: error: out of memory ({str(e).splitlines()[0][:160]}); use a smaller size, '
                         'batch or tile; finished files are kept\n')
        return 2
    except KeyboardInterrupt:
        sys.stderr.write('jaxvis: interrupted; finished files are kept, nothing half-written remains\n')
        return 130


if __name__ == '__main__':
    sys.exit(main())
