"""An atlas chunk's results as files (PNGs, GIFs) and its record, and the records gathered per layer for
:mod:`jaxvis.edge.site`. Paths in records are relative to the atlas folder: ``img/<layer>/<f>.png``,
``<f>.gif``, ``<f>_d<j>.png`` (diverse), ``<f>_x<j>.png`` (dataset examples).
"""
from __future__ import annotations

import os

import numpy as np

from jaxvis.atlas.plan import Chunk
from jaxvis.display import to_uint8
from jaxvis.edge import store
from jaxvis.edge.files import file_stem, save_gif, save_png


def _folder(out: str, layer: str) -> str:
    rel = f'img/{file_stem(layer)}'
    os.makedirs(os.path.join(out, rel), exist_ok=True)
    return rel


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def write_filters(out: str, chunk: Chunk, res: dict, normalize: str) -> dict:
    """PNG and GIF of each filter of a filters chunk; returns its record."""
    rel = _folder(out, chunk.layer)
    pics = to_uint8(res['images'], normalize)
    frames = [to_uint8(s, normalize) for s in res['snapshots']]
    rows = []
    for i, f in enumerate(res['filters']):
        png, gif = f'{rel}/{int(f)}.png', f'{rel}/{int(f)}.gif'
        save_png(os.path.join(out, png), pics[i])
        save_gif(os.path.join(out, gif), [fr[i] for fr in frames], duration_ms=120)
        rows.append({'filter': int(f), 'loss': _num(res['loss'][i]), 'dead': bool(res['dead'][i]),
                     'rescued': bool(res['rescued'][i]), 'selectivity': _num(res['selectivity'][i]),
                     'activation': _num(res['activation'][i]), 'png': png, 'gif': gif})
    return {'kind': 'filters', 'layer': chunk.layer, 'filters': rows}


def write_diverse(out: str, chunk: Chunk, res: dict) -> dict:
    rel = _folder(out, chunk.layer)
    f = chunk.filters[0]
    pics = to_uint8(res['images'], 'clip')
    paths = [f'{rel}/{f}_d{j}.png' for j in range(len(pics))]
    for path, pic in zip(paths, pics):
        save_png(os.path.join(out, path), pic)
    return {'kind': 'diverse', 'layer': chunk.layer, 'filter': f, 'images': paths,
            'activation': [_num(a) for a in res['activation']], 'diversity': _num(res['diversity'])}


def write_examples(out: str, chunk: Chunk, res: dict, labels: list[str]) -> dict:
    rel = _folder(out, chunk.layer)
    per_filter = []
    for i, f in enumerate(chunk.filters):
        rows = []
        for j, (score, (p, r, c)) in enumerate(zip(res['scores'][i], res['where'][i])):
            if p < 0:
                continue
            path = f'{rel}/{f}_x{j}.png'
            save_png(os.path.join(out, path), np.clip(np.rint(res['crops'][i, j]), 0, 255).astype(np.uint8))
            rows.append({'png': path, 'score': _num(score), 'photo': labels[int(p)], 'unit': [int(r), int(c)]})
        per_filter.append(rows)
    return {'kind': 'examples', 'layer': chunk.layer, 'filters': list(chunk.filters), 'examples': per_filter}


def record_files(rec: dict) -> list[str]:
    """The files (relative paths) a chunk's record refers to."""
    if rec['kind'] == 'filters':
        return [path for row in rec['filters'] for path in (row['png'], row['gif'])]
    if rec['kind'] == 'diverse':
        return list(rec['images'])
    return [row['png'] for rows in rec['examples'] for row in rows]


def layer_entries(out: str, chunks: list[Chunk], channels: dict[str, int]) -> list[dict]:
    """The finished chunks' records gathered per layer (forward order) for :func:`jaxvis.edge.site.pages`;
    layers with no finished filter chunk are left out."""
    entries: dict[str, dict] = {}
    for chunk in chunks:
        rec = store.finished(out, chunk.name)
        if rec is None:
            continue
        e = entries.setdefault(chunk.layer, {'layer': chunk.layer, 'channels': channels[chunk.layer],
                                             'filters': [], 'diverse': {}, 'examples': {}})
        if chunk.kind == 'filters':
            e['filters'] += rec['filters']
        elif chunk.kind == 'diverse':
            e['diverse'][rec['filter']] = rec
        else:
            e['examples'].update(zip(rec['filters'], rec['examples']))
    return [e for e in entries.values() if e['filters']]
