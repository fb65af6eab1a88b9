"""``jaxvis filters``'s files for one layer: each process's per-filter images, and (process 0) the layer's
grid and GIF from every process's results, gathered through JAX when the run spans processes."""
from __future__ import annotations

import io
import os
from typing import NamedTuple

import numpy as np

from jaxvis.backend import hosts
from jaxvis.display import grid, maco_rgba, to_uint8
from jaxvis.edge.files import file_stem, save_gif, save_jpg, save_png


class Layer(NamedTuple):
    """A layer's results as the grid and the manifest need them (numpy, in the order the filters were asked).

    filters: [N] int; losses: [N] float32; dead: [N] bool; pics: [N, H, W, 3] uint8 (display-normalized);
    frames: [S, N, H, W, 3] uint8 snapshots, or None; rescued: [N] bool (the config's rescue revived it).
    """

    filters: np.ndarray
    losses: np.ndarray
    dead: np.ndarray
    pics: np.ndarray
    frames: np.ndarray | None
    rescued: np.ndarray


def own(res, normalize: str, frames: bool) -> Layer:
    """This process's part of a layer from a :class:`jaxvis.FilterResult`."""
    shots = None
    if frames and res.snapshots is not None:
        shots = np.stack([to_uint8(s, normalize) for s in res.snapshots])
    return Layer(np.asarray(res.filters), np.asarray(res.losses), np.asarray(res.dead),
                 to_uint8(res.images, normalize), shots, res.rescued_mask())


def write_filter_files(out: str, layer: str, res, part: Layer, fmt: str = 'png') -> None:
    """The per-filter images of this process's filters, ``<stem>_<f>.<fmt>`` ('png' or 'jpg'; and for a
    param with a transparency, such as maco's, ``<stem>_<f>_alpha.png`` RGBA)."""
    stem, save = file_stem(layer), save_jpg if fmt == 'jpg' else save_png
    for i, (f, pic) in enumerate(zip(part.filters, part.pics)):
        save(os.path.join(out, f'{stem}_{int(f)}.{fmt}'), pic)
        if res.alpha is not None:
            save_png(os.path.join(out, f'{stem}_{int(f)}_alpha.png'), maco_rgba(res.images[i], res.alpha[i]))


def gather(part: Layer) -> Layer | None:
    """Every process's part, joined in process order (the filters' order), on process 0; None elsewhere.
    A collective: every process calls it. In a single process: ``part`` itself."""
    if hosts.process_count() == 1:
        return part
    buf = io.BytesIO()
    arrays = {k: v for k, v in part._asdict().items() if v is not None}
    np.savez(buf, **arrays)
    parts = [np.load(io.BytesIO(b)) for b in hosts.gather_bytes(buf.getvalue())]
    if hosts.process_index() != 0:
        return None
    return Layer(*(np.concatenate([p[k] for p in parts], axis=1 if k == 'frames' else 0) if k in parts[0] else None
                   for k in Layer._fields))


def write_summary(out: str, layer: str, whole: Layer, order, *, margin: int, gif: bool) -> list[str]:
    """The grid of the filters at positions ``order`` (best first) and optionally the GIF of them forming;
    returns the file names."""
    stem, files = file_stem(layer), []
    if len(order):
        save_png(os.path.join(out, f'{stem}_grid.png'), grid([whole.pics[i] for i in order], margin=margin))
        files.append(f'{stem}_grid.png')
    if gif and whole.frames is not None and len(order):
        frames = [grid(list(shot[order]), margin=margin) for shot in whole.frames]
        save_gif(os.path.join(out, f'{stem}.gif'), frames, duration_ms=150)
        files.append(f'{stem}.gif')
    return files
