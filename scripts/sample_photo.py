#!/usr/bin/env python3
"""Fetch a real photo to dream on: one that ships inside scikit-image's wheel on PyPI.

    python scripts/sample_photo.py chelsea.png && jaxvis dream chelsea.png --layer block4_conv3 --out dream.png

``pip download``s the scikit-image wheel (about 15 MB, not installed, no dependencies) into a
temporary folder, takes ``skimage/data/<name>.png`` out of it, checks its sha256 and writes it
atomically. ``--wheel PATH`` uses a wheel you already have instead (no network).

Photos (licences as stated in ``skimage/data/_fetchers.py``): chelsea, a cat, 451 x 300 (CC0, Stefan van
der Walt); coffee, 600 x 400 (CC0, Rachel Michetti); astronaut, Eileen Collins, 512 x 512 (NASA, public domain).
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

from jaxvis.edge.photos import SHA256, SKIMAGE_VERSION as VERSION, extract

# Any wheel holds the same data; these tags are used when pip finds none for this Python.
FALLBACK_TAGS = ['--platform', 'manylinux_2_28_x86_64', '--python-version', '3.12', '--implementation', 'cp',
                 '--abi', 'cp312']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Fetch a sample photo from the scikit-image wheel on PyPI.')
    parser.add_argument('out', nargs='?', default='chelsea.png', help='where to write it (default chelsea.png)')
    parser.add_argument('--name', choices=sorted(SHA256), default=None,
                        help='which photo (default: from OUT\'s file name if it is one of them, else chelsea)')
    parser.add_argument('--wheel', metavar='PATH', help='a scikit-image wheel already downloaded (no network)')
    args = parser.parse_args(argv)
    stem = os.path.splitext(os.path.basename(args.out))[0]
    name = args.name or (stem if stem in SHA256 else 'chelsea')
    try:
        if args.wheel:
            data = extract(args.wheel, name)
        else:
            with tempfile.TemporaryDirectory(prefix='jaxvis-sample-') as tmp:
                data = extract(download(tmp), name)
        write_atomic(args.out, data)
    except (OSError, RuntimeError) as e:
        sys.stderr.write(f'sample_photo: error: {e}\n')
        return 2
    sys.stderr.write(f'sample_photo: wrote {args.out} ({name}.png from scikit-image {VERSION}, sha256 ok)\n')
    return 0


def download(folder: str) -> str:
    """``pip download`` the scikit-image wheel into ``folder``; returns the wheel's path."""
    base = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
            '--disable-pip-version-check', '--no-input', '-q', f'scikit-image=={VERSION}', '-d', folder]
    for extra in ([], FALLBACK_TAGS):
        proc = subprocess.run(base + extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wheels = glob.glob(os.path.join(folder, 'scikit_image-*.whl'))
        if proc.returncode == 0 and wheels:
            return wheels[0]
    last = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    raise RuntimeError(f'pip download scikit-image=={VERSION} failed: {last[-1] if last else "no output"}')


def write_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.sample-', suffix='.png', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


if __name__ == '__main__':
    sys.exit(main())
