"""What an atlas computes, as a list of independent chunks (pure: no files, no compute).

An atlas of a model is, per layer: its filters' images (in chunks of ``chunk`` filters), a few diverse
images for each of its first ``diverse`` filters, and dataset examples (crops of real photos). Each chunk
depends only on the config, the weights and the photos (never on which chunks ran before it or in which
process), so a stopped job continues by computing the chunks whose results are not on disk yet, and the
result is the same bytes as an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, NamedTuple

import numpy as np

from jaxvis.util import check_int

KINDS = ('filters', 'diverse', 'examples')


@dataclasses.dataclass(frozen=True)
class AtlasConfig:
    """The whole job. ``filters``: the filters asked per layer as text (``'0:16'``, ``'3,7,9'``, ``'all'``;
    the checked indices are passed to :func:`chunks`), ``chunk``: filters per computed chunk (and per
    compiled batch), ``diverse``: how many filters per layer (the first ones) get ``diverse_n`` diverse
    images of ``diverse_size`` px in ``diverse_steps`` steps, ``examples``: dataset examples per filter."""

    model: str = 'vgg16'
    layers: tuple[str, ...] = ()
    filters: str = '0:16'
    preset: str = 'seed'
    steps: int | None = None
    size: int = 128
    seed: int = 0
    chunk: int = 16
    snapshot_every: int = 2
    diverse: int = 4
    diverse_n: int = 3
    diverse_steps: int = 24
    diverse_size: int = 64
    examples: int = 4

    def __post_init__(self):
        for name in ('size', 'chunk', 'snapshot_every', 'diverse_n', 'diverse_steps', 'diverse_size'):
            check_int(name, getattr(self, name), low=1)
        check_int('diverse_n', self.diverse_n, low=2)
        check_int('diverse', self.diverse, low=0)
        check_int('examples', self.examples, low=0)
        check_int('seed', self.seed)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d['layers'] = list(self.layers)
        return d


class Chunk(NamedTuple):
    """One unit of work. ``name``: its file-name stem, unique in the atlas; ``cost``: estimated work
    (for the progress ETA), in units of one filter-step at the layer."""

    kind: str
    layer: str
    filters: tuple[int, ...]
    name: str
    cost: float


def fingerprint(description: dict) -> str:
    """sha256 of a JSON description (sorted keys): two runs agree iff their fingerprints do."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def chunks(cfg: AtlasConfig, filters: dict[str, np.ndarray], steps: int,
           layer_cost: dict[str, float] | None = None) -> list[Chunk]:
    """Every chunk of the job, layer by layer (filters, then diverse, then examples), in run order.

    ``filters``: ``{layer: [N] int}`` checked indices; ``steps``: the filter preset's step count;
    ``layer_cost``: relative cost of one image-step at each layer (default 1 each).
    """
    out = []
    for i, (layer, idx) in enumerate(filters.items()):
        c = (layer_cost or {}).get(layer, 1.0)
        stem = f'{i:02d}'
        for pos in range(0, len(idx), cfg.chunk):
            part = tuple(int(f) for f in idx[pos:pos + cfg.chunk])
            out.append(Chunk('filters', layer, part, f'{stem}_filters_{pos // cfg.chunk:03d}',
                             c * len(part) * steps))
        area = (cfg.diverse_size / cfg.size) ** 2
        for f in idx[:cfg.diverse]:
            out.append(Chunk('diverse', layer, (int(f),), f'{stem}_diverse_{int(f)}',
                             c * area * cfg.diverse_n * cfg.diverse_steps * 3))  # Fourier param + transforms
        if cfg.examples:
            out.append(Chunk('examples', layer, tuple(int(f) for f in idx), f'{stem}_examples', c * 8))
    return out


def layer_costs(shapes: dict[str, tuple], layers) -> dict[str, float]:
    """Relative cost of a forward and backward pass up to each of ``layers``: the summed activation sizes
    of every layer up to it (``shapes``: ``{name: (H, W, C)}`` in forward order), normalized so the first
    layer asked costs 1."""
    total, running = {}, 0.0
    for name, shape in shapes.items():
        running += float(np.prod(shape))
        total[name] = running
    base = total[layers[0]] if layers else 1.0
    return {layer: total[layer] / base for layer in layers}


def assign(plan: list[Chunk], n: int) -> list[int]:
    """The process (0..n-1) that computes each chunk of ``plan``: the costliest chunks first, each to the
    process with the least work so far (ties: the lowest index). Pure and deterministic, so every
    process of a run derives the same assignment."""
    load = [0.0] * n
    owner = [0] * len(plan)
    for i in sorted(range(len(plan)), key=lambda i: -plan[i].cost):
        p = min(range(n), key=lambda q: (load[q], q))
        owner[i] = p
        load[p] += plan[i].cost
    return owner
