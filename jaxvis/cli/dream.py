"""``jaxvis dream``: DeepDream a photo, or dream a zooming sequence into frames, a GIF or an MP4.

Writes ``--out`` (the last frame, PNG), ``<out without extension>.json`` (manifest), and with
``--frames N > 1`` every frame as a PNG in ``--frames-dir`` as soon as it is done, and the manifest
after it, so a Ctrl-C or a full disk keeps the finished frames and a manifest saying where it stopped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from jaxvis.cli import common
from jaxvis.display import to_uint8
from jaxvis.dream import DEFAULT_LAYERS, PRESETS, DreamConfig, check_dream, check_sequence, deepdream, dream_sequence
from jaxvis.edge.files import check_fps, check_out_dir, check_out_file, environment, save_gif, save_mp4, save_png, \
    write_json
from jaxvis.edge.images import read_image
from jaxvis.edge.locations import file_digest
from jaxvis.errors import JaxvisError
from jaxvis.util import check_int, check_seed

DEFAULT_LAYER = next(iter(DEFAULT_LAYERS))
BASE = {'octaves': 4, 'octave_scale': 1.4, 'steps': 10, 'step_size': 0.01}  # without --preset


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        'dream', help='amplify what whole layers respond to in a photo (DeepDream)',
        description='Gradient ascent on a photo to amplify what the given layers respond to, over several '
                    'scales (octaves); with --frames, zoom in and dream again on the result, frame after frame.')
    p.add_argument('input', metavar='INPUT', help='image file (anything Pillow reads; EXIF rotation applied)')
    p.add_argument('--layer', action='append', metavar='NAME[:WEIGHT]', dest='layers',
                   help=f'layer to amplify, with an optional weight; repeat to mix layers (default {DEFAULT_LAYER})')
    p.add_argument('--out', default='dream.png', metavar='PNG', help='result image (default dream.png)')
    g = p.add_argument_group('sequence')
    g.add_argument('--frames', type=int, default=1, help='frames to dream (default 1)')
    g.add_argument('--zoom', type=float, default=1.05, help='zoom into the centre between frames (default 1.05)')
    g.add_argument('--rotate', type=float, default=0.0, help='degrees to rotate between frames (default 0)')
    g.add_argument('--gif', metavar='PATH', help='also write the frames as an animated GIF')
    g.add_argument('--mp4', metavar='PATH', help='also write the frames as an H.264 MP4')
    g.add_argument('--fps', type=int, default=10, help='frames per second of GIF/MP4 (default 10)')
    g.add_argument('--frames-dir', metavar='DIR',
                   help='where each frame PNG goes (default: <out without extension>_frames/ when --frames > 1)')
    o = p.add_argument_group('dreaming')
    o.add_argument('--seed', type=int, default=0, help='random seed for the jitter (default 0)')
    o.add_argument('--preset', choices=tuple(PRESETS), default=None,
                   help="a known recipe: keras-io (keras.io's Deep Dream on --model inception_v3: layers mixed4:1, "
                        "mixed5:1.5, mixed6:2, mixed7:2.5, 3 octaves at 1.4, 20 steps of 0.01, the loss without a "
                        "2-activation border); --layer, --octaves, --steps ... given as well win")
    o.add_argument('--octaves', type=int, default=None, help=f'number of scales (default {BASE["octaves"]})')
    o.add_argument('--octave-scale', type=float, default=None,
                   help=f'size ratio between scales (default {BASE["octave_scale"]})')
    o.add_argument('--steps', type=int, default=None, help=f'ascent steps per octave (default {BASE["steps"]})')
    o.add_argument('--step-size', type=float, default=None,
                   help='mean change of a pixel per step, in units of 127.5 grey levels '
                        f'(default {BASE["step_size"]})')
    o.add_argument('--blur-sigma', type=float, default=0.0,
                   help='Gaussian blur in pixels after every step; it adds up over the steps and washes the '
                        'photo out (0.5 px a step for 40 steps is a 3 px blur), so keep it small (default 0)')
    o.add_argument('--objective', choices=('mean_square', 'mean'), default='mean_square',
                   help='what to maximise in each layer (default mean_square)')
    o.add_argument('--tile-size', type=int, default=512,
                   help='largest tile run through the network at once; bounds memory (default 512)')
    o.add_argument('--tile-margin', type=int, default=0, help='context pixels around each tile (default 0)')
    o.add_argument('--max-size', type=int, default=1024,
                   help='shrink the input so its longer side is at most this; 0 keeps it (default 1024)')
    o.add_argument('--quiet', action='store_true', help='no progress bar or messages')
    common.add_model_args(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import jax

    model = common.model_of(args)
    config = dream_config(args)
    check_sequence(frames=args.frames, zoom=args.zoom, rotate=args.rotate)
    check_fps(args.fps)
    check_seed(args.seed)
    check_int('max size', args.max_size, low=0)
    outputs = _plan_outputs(args)
    image, original_size = read_image(args.input, max_size=args.max_size)
    shapes = check_dream(model, config, image.shape[:2])  # before loading weights
    params, weights_info = common.load_params(args, model, quiet=args.quiet)
    common.use_compile_cache()

    manifest = {
        'command': 'dream',
        'input': {'path': os.path.abspath(args.input), 'size': list(original_size),
                  'sha256': file_digest(args.input)},
        'size': [image.shape[1], image.shape[0]], 'model': model.name, 'weights': weights_info, 'seed': args.seed,
        'config': {**config.to_dict(), 'octave_shapes': [list(s) for s in shapes], 'max_size': args.max_size,
                   'frames': args.frames, 'zoom': args.zoom, 'rotate': args.rotate, 'fps': args.fps},
        'outputs': {},  # what has been written, as it is written
        'frames_done': 0, 'interrupted': False, 'history': [], 'environment': environment(),
    }
    frames_u8 = []
    bar = _progress(total=args.frames * len(shapes), quiet=args.quiet)
    started = time.time()

    def on_frame(i, result):
        frame = to_uint8(np.asarray(result.image), 'clip')
        frames_u8.append(frame)
        if outputs['frames_dir']:
            save_png(os.path.join(outputs['frames_dir'], f'frame_{i:04d}.png'), frame)
            manifest['outputs']['frames_dir'] = os.path.abspath(outputs['frames_dir'])
        manifest['history'].append(_history_json(i, result.history))
        manifest['frames_done'] = i + 1
        if outputs['frames_dir']:  # a sequence: the last manifest written always matches the frames there
            _write_manifest(outputs['manifest'], manifest, started)

    def write(name, save, *a, **k):
        save(outputs[name], *a, **k)
        manifest['outputs'][name] = os.path.abspath(outputs[name])

    try:
        key = jax.random.key(args.seed)
        progress = lambda i, s: bar.update(1)
        if args.frames == 1:
            on_frame(0, deepdream(params, image, config, key=key, model=model, on_octave=progress))
        else:
            dream_sequence(params, image, config, frames=args.frames, zoom=args.zoom, rotate=args.rotate, key=key,
                           model=model, on_frame=on_frame, on_octave=progress)
        bar.close()
        write('out', save_png, frames_u8[-1])
        if outputs['gif']:
            write('gif', save_gif, frames_u8, duration_ms=round(1000 / args.fps))
        if outputs['mp4']:
            write('mp4', save_mp4, frames_u8, fps=args.fps)
    except (KeyboardInterrupt, JaxvisError) as e:  # Ctrl-C, or a write the disk refused
        bar.close()
        manifest['interrupted'] = isinstance(e, KeyboardInterrupt)
        manifest['error'] = None if manifest['interrupted'] else str(e)
        try:  # the manifest says what was written; a disk that refused the frame may refuse it too
            _write_manifest(outputs['manifest'], manifest, started)
        except JaxvisError:
            pass
        raise
    manifest['outputs']['manifest'] = os.path.abspath(outputs['manifest'])
    _write_manifest(outputs['manifest'], manifest, started)
    if not args.quiet:
        written = [outputs['out'], outputs['manifest']] + [outputs[k] for k in ('gif', 'mp4') if outputs[k]]
        if outputs['frames_dir']:
            written.append(f'{outputs["frames_dir"]}{os.sep} ({args.frames} frames)')
        sys.stderr.write(f'jaxvis: wrote {", ".join(written)}\n')
    return 0


def dream_config(args: argparse.Namespace) -> DreamConfig:
    """The config of ``--preset`` (or of the defaults), with the flags given on the command line winning."""
    given = {k: getattr(args, k) for k in BASE if getattr(args, k) is not None}
    if args.layers:
        given['layers'] = parse_layers(args.layers)
    rest = dict(objective=args.objective, tile_size=args.tile_size, tile_margin=args.tile_margin,
                blur_sigma=args.blur_sigma)
    if args.preset:
        return DreamConfig.preset(args.preset, **given, **rest)
    return DreamConfig.make(**{'layers': {DEFAULT_LAYER: 1.0}, **BASE, **given}, **rest)


def parse_layers(specs: list[str]) -> dict[str, float]:
    """``['block4_conv3', 'block5_conv1:0.5']`` -> ``{'block4_conv3': 1.0, 'block5_conv1': 0.5}``.

    Raises JaxvisError for an empty name, a weight that is not a finite number, or a layer given twice.
    """
    layers: dict[str, float] = {}
    for item in specs:
        name, sep, weight = item.partition(':')
        name = name.strip()
        if not name:
            raise JaxvisError(f'--layer {item!r}: expected NAME or NAME:WEIGHT')
        value = 1.0
        if sep:
            try:
                value = float(weight)
            except ValueError:
                raise JaxvisError(f'--layer {item!r}: weight {weight!r} is not a number') from None
            if not np.isfinite(value):
                raise JaxvisError(f'--layer {item!r}: weight must be finite')
        if name in layers:
            raise JaxvisError(f'--layer {name} given twice')
        layers[name] = value
    return layers


def _plan_outputs(args) -> dict[str, str | None]:
    """Output paths, checked before any work by writing there (:func:`check_out_file`): folders created."""
    out = args.out
    if not out.lower().endswith('.png'):
        raise JaxvisError(f'--out {out}: the result is written as PNG; give a path ending in .png')
    stem = os.path.splitext(out)[0]
    frames_dir = args.frames_dir or (f'{stem}_frames' if args.frames > 1 else None)
    outputs = {'out': out, 'manifest': stem + '.json', 'gif': args.gif, 'mp4': args.mp4, 'frames_dir': frames_dir}
    for name, path in outputs.items():
        if path and name != 'frames_dir':
            check_out_file(path)
    if frames_dir:
        check_out_dir(frames_dir)
    return outputs


def _history_json(frame: int, history: dict) -> dict:
    return {
        'frame': frame,
        'octaves': history['octaves'],
        'shapes': [list(s) for s in history['shapes']],
        'objective': [[float(f'{v:.6g}') for v in np.asarray(values).tolist()] for values in history['objective']],
    }


def _write_manifest(path: str, manifest: dict, started: float) -> None:
    manifest['elapsed_s'] = round(time.time() - started, 2)
    write_json(path, manifest)


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit='octave', desc='dreaming', file=sys.stderr, disable=quiet, dynamic_ncols=True)
