"""What the filter engine returns."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from jaxvis.visualize.config import FilterConfig


class FilterResult(NamedTuple):
    """What :func:`visualize_filters` returns (numpy arrays on the host).

    images:    [N, H, W, 3] float32, RGB nominally 0..255 (the optimized inputs, de-processed, not clipped)
    losses:    [N] float32, the objective of each final image
    history:   [steps, N] float32, the objective at each step, before that step's update
    dead:      [N] bool, its gradient is 0, the image cannot move (seed 003 drops these): final objective <= 0
               on a spatial ReLU layer, an objective that never moved on one without spatial axes
               (:func:`jaxvis.visualize.schedule.dead_mask`)
    filters:   [N] int, the filter indices, in the order asked
    snapshots: [S, N, H, W, 3] float32 RGB at ``snapshot_steps`` (start, every k steps, end), or None
    snapshot_steps: tuple of the S step counts
    config:    the FilterConfig used
    alpha:     [N, H, W] float32 >= 0, a param's accumulated ``|d objective / d image|`` summed over
               colours (MACO's transparency: :func:`jaxvis.display.maco_rgba`), or None
    rescued:   [N] bool, the filters ``config.rescue``'s rerun brought to fire (their arrays are the
               rerun's), or None for a config without a rescue
    """

    images: np.ndarray
    losses: np.ndarray
    history: np.ndarray
    dead: np.ndarray
    filters: np.ndarray
    snapshots: np.ndarray | None
    snapshot_steps: tuple[int, ...]
    config: FilterConfig
    alpha: np.ndarray | None = None
    rescued: np.ndarray | None = None

    def rescued_mask(self) -> np.ndarray:
        """[N] bool: ``rescued``, all False for a config without a rescue."""
        return np.zeros(len(self.filters), bool) if self.rescued is None else np.asarray(self.rescued, bool)


def with_rescue(first: FilterResult, second: FilterResult | None, pos: np.ndarray) -> FilterResult:
    """``first`` with the filters at positions ``pos`` (dead in it) replaced by ``second``'s results for
    them (``second.filters == first.filters[pos]``, None when ``pos`` is empty) where ``second`` fires;
    ``rescued`` marks them. Everything else, and the config, stay ``first``'s."""
    rescued = np.zeros(len(first.filters), bool)
    if second is None:
        return first._replace(rescued=rescued)
    take = pos[~second.dead]
    got = np.flatnonzero(~second.dead)
    rescued[take] = True

    def put(a, b, axis=0):
        if a is None:
            return None
        a = a.copy()
        index = (slice(None),) * axis + (take,)
        a[index] = np.take(b, got, axis=axis)
        return a

    return first._replace(images=put(first.images, second.images), losses=put(first.losses, second.losses),
                          history=put(first.history, second.history, 1), dead=put(first.dead, second.dead),
                          snapshots=put(first.snapshots, second.snapshots, 1), alpha=put(first.alpha, second.alpha),
                          rescued=rescued)


def empty_result(cfg: FilterConfig, size: int, snap_steps: set[int]) -> FilterResult:
    """A result with no filters (a process of a multi-process run with none to compute)."""
    z = np.zeros((0, size, size, 3), np.float32)
    return FilterResult(images=z, losses=np.zeros(0, np.float32), history=np.zeros((cfg.steps, 0), np.float32),
                        dead=np.zeros(0, bool), filters=np.zeros(0, np.int64),
                        snapshots=np.zeros((len(snap_steps),) + z.shape, np.float32) if snap_steps else None,
                        snapshot_steps=tuple(sorted(snap_steps)), config=cfg,
                        alpha=None if cfg.param.accumulate is None else np.zeros((0, size, size), np.float32),
                        rescued=None if cfg.rescue is None else np.zeros(0, bool))


def best_order(result: FilterResult, n: int | None = None) -> np.ndarray:
    """Positions into ``result`` of the best ``n`` live filters by final objective, best first."""
    live = np.flatnonzero(~result.dead)
    order = live[np.argsort(-result.losses[live], kind='stable')]
    return order if n is None else order[:n]


def filters_of(result: FilterResult, order: Sequence[int]) -> list[int]:
    return [int(result.filters[i]) for i in order]
