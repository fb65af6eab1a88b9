"""The engine's loop over chunks of filters and over steps, and the early drop of dead filters.

A *dead* filter (seed 003: "some filters get stuck to 0, we can skip them") has objective exactly 0 and a
gradient exactly 0 at its start image, so a step leaves the image bit for bit unchanged. When the step is
deterministic and ignores the step number (:func:`can_drop_dead`), that image is a fixed point: every
later step would return it again, with objective 0. :func:`run` with ``drop_dead`` takes the first step
for every filter, then packs only the live ones into full batches for the remaining steps; a dead
filter's result is exactly what running all its steps gives, and a live one's too: it shares its batch
with other filters than without the drop, and no image depends on its batch mates.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import optim
from jaxvis import regularizers as R
from jaxvis import transforms as T
from jaxvis.visualize.config import FilterConfig


class Chunked(NamedTuple):
    """What :func:`run` returns (numpy, in the order of the filters).

    x: [N, H, W, 3] final model input; losses: [N] final objective; history: [steps, N] objective before
    each step; snapshots: [S, N, H, W, 3] model input at the sorted snapshot steps, or None.
    """

    x: np.ndarray
    losses: np.ndarray
    history: np.ndarray
    snapshots: np.ndarray | None


def can_drop_dead(cfg: FilterConfig) -> bool:
    """Whether an image with zero gradient is a fixed point of ``cfg``'s step: plain (optionally normalized)
    ascent (:func:`jaxvis.optim.ascent`) on model-input pixels, with no transform, jitter, regularizer
    or redirected ReLU."""
    return (cfg.param.space == 'input' and cfg.transform is T.identity() and optim.is_plain(cfg.optimizer)
            and cfg.redirect_relu_steps == 0 and cfg.regularizer is R.identity())


def dead_mask(losses: np.ndarray, history: np.ndarray, *, spatial: bool) -> np.ndarray:
    """Which filters are dead: [N] bool from ``losses`` [N] and ``history`` [steps, N].

    A spatial ReLU layer's unit (the seeds' VGG): final objective ``<= 0``, where no gradient reaches the
    image. A layer without spatial axes (logits, pooled features) can be negative and still move, so there
    a unit is dead only if its objective never moved: every history entry and the final objective equal
    the first (what a zero gradient at the start gives); with no steps, none is."""
    if spatial:
        return losses <= 0
    if history.shape[0] == 0:
        return np.zeros(losses.shape, bool)
    return np.all(history == history[:1], axis=0) & (losses == history[0])


def run(begin: Callable, step: Callable, score: Callable, to_x: Callable, n: int, bs: int, steps: int,
        snap_steps: set[int], progress: Callable[[int], None] | None = None, drop_dead: bool = False) -> Chunked:
    """Optimize ``n`` filters in chunks of ``bs``. A last, partial chunk is padded (by repeating its last
    filter) to ``bs``: every call has the same shape, so no image depends on how many filters share it.

    begin(pos [bs] positions into the n filters, x=None or [bs, H, W, 3] model input to resume from)
      -> (x, opt_state, f, keys), batched on the devices;
    step(x, opt_state, f, keys, t, real) -> (x, opt_state, loss [bs]), ``real`` the chunk's real filters
      (slots ``real:`` repeat slot ``real - 1``; a step may skip them, as the staged step does);
    score(model input, f) -> [bs];
    to_x: params -> model input.  progress: called with the filter-steps just done.
    """
    first = 1 if drop_dead else steps
    parts = []
    for pos, real in _chunks(np.arange(n), bs):
        state = begin(pos)
        x0 = np.asarray(to_x(state[0]))[:real] if drop_dead else None
        xm, hist, snaps = advance(step, state, range(first), snap_steps, to_x, progress, real,
                                  end=None if drop_dead else steps)
        final = None if drop_dead else np.asarray(score(xm, state[2]))[:real]
        parts.append((np.asarray(xm)[:real], hist, snaps, final, x0))
    x, hist, snaps = (np.concatenate([p[i] for p in parts], axis=min(i, 1)) for i in range(3))
    if not drop_dead:
        return Chunked(x, np.concatenate([p[3] for p in parts]), hist, snaps if snap_steps else None)

    x0 = np.concatenate([p[4] for p in parts])
    dead = (hist[0] == 0) & np.all((x == x0).reshape(n, -1), axis=1)
    if progress is not None and dead.any():
        progress(int(dead.sum()) * (steps - first))
    history = np.zeros((steps, n), np.float32)
    history[:first] = hist
    losses = np.zeros(n, np.float32)
    early = sum(s < first for s in snap_steps)
    snapshots = np.repeat(x[None], len(snap_steps), axis=0) if snap_steps else None  # the dead stay put
    if early:
        snapshots[:early] = snaps
    for pos, real in _chunks(np.flatnonzero(~dead), bs):
        state = begin(pos, x=x[pos])
        xm, hist, snaps = advance(step, state, range(first, steps), snap_steps, to_x, progress, real, end=steps)
        done = pos[:real]
        x[done], history[first:, done] = np.asarray(xm)[:real], hist
        losses[done] = np.asarray(score(xm, state[2]))[:real]
        if snap_steps:
            snapshots[early:, done] = snaps
    return Chunked(x, losses, history, snapshots)


def _chunks(pos: np.ndarray, bs: int):
    """``(positions padded to ``bs`` by repeating the last one, number of real ones)`` per chunk."""
    for lo in range(0, len(pos), bs):
        chunk = pos[lo:lo + bs]
        yield np.concatenate([chunk, np.repeat(chunk[-1:], bs - len(chunk))]), len(chunk)


def advance(step, state, ts: range, snap_steps, to_x, progress, real: int, end: int | None):
    """The ascent loop: run steps ``ts`` of one chunk (a Python loop over one jitted step, measured faster
    than ``lax.fori_loop`` on XLA:CPU). ``state = (x, opt_state, f, keys)``; ``step(x, opt_state, f, keys,
    t, real) -> (x, opt_state, loss [B])`` (:func:`run`). Snapshots are taken before each step in ``snap_steps`` and, if
    ``end`` is in ``snap_steps``, after the last. Returns (final model input ``to_x(x)`` on device,
    history [len(ts), real], snapshots [S, real, H, W, 3])."""
    x, opt_state, f, keys = state
    hist, snaps = [], []
    for t in ts:
        if t in snap_steps:
            snaps.append(to_x(x))
        x, opt_state, loss = step(x, opt_state, f, keys, jnp.int32(t), real)
        hist.append(loss)
        if progress is not None:
            loss.block_until_ready()  # report work done, not work queued
            progress(real)
    xm = to_x(x)
    if end is not None and end in snap_steps:
        snaps.append(xm)
    history = np.asarray(jnp.stack(hist))[:, :real] if hist else np.zeros((0, real), np.float32)
    if snaps:
        shots = np.asarray(jnp.stack(snaps))[:, :real]
    else:
        shots = np.zeros((0, real) + np.shape(jax.tree_util.tree_leaves(xm)[0])[1:], np.float32)
    return xm, history, shots
