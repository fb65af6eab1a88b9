"""The ``jaxvis`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``.

Errors the user can fix (JaxvisError) print one line and exit 2; Ctrl-C prints one line and exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys

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
        return int(args.run(args) or 0)
    except JaxvisError as e:
        sys.stderr.write(f'jaxvis: error: {e}\n')
        return 2
    except Exception as e:  # XLA out of memory on a size the up-front estimate let through: one line too
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
