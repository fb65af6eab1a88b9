"""The convolution plan measured on the machine that runs it.

For each 3x3 convolution shape ``(side, c_in, c_out)`` at the engine's batch and precision,
:func:`best_impl` times a direct convolution, Winograd F(2x2, 3x3) and F(4x4, 3x3) (bf16: direct and
F(2x2) only, :func:`impls`) (forward plus input gradient, the work of one ascent step, compiled with
:func:`jaxvis.backend.xla.compiler_options`; the kernel prepared outside the timed step, as the engine
does once per job) and keeps the fastest; Winograd must win by :data:`MARGIN` to be chosen (a direct
convolution is XLA's own, and rounds as it does). Results live in an in-memory table keyed by the
shape, the batch, the precision, the CPU model and the jax version; :func:`table` / :func:`load` and a
``keep`` callback (:func:`keep_with`) let the edge keep it on disk (``jaxvis.edge.tuning.use_disk_cache``,
which the CLI calls), so a machine measures once. Without it a process measures what it needs once, in
memory. ``JAXVIS_TUNE=0`` turns measuring off: then the static rule of :mod:`.conv_plan` applies
(float32; bf16 convolutions stay direct).

A plan depends on the layer's shape, the group width and the machine, never on how many filters are asked
for or on the device count: the engine compiles groups of the same per-device width (``width=``,
``visualize.engine.WIDTH`` by default).
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.backend import onednn
from jaxvis.backend.xla import compiler_options

IMPLS = ('direct', 'winograd2', 'winograd4', 'onednn')
MARGIN = 1.05        # Winograd must be this much faster than direct to be chosen
MIN_CHANNELS = 64    # below this many input channels the transforms always lose (measured: docs/performance.md)
REPEATS = 3
RUN_IMAGES = 8       # a timed run covers at least this many images (calls_per_run)


FORM = 4             # what a timing covers; 4: as 3, Winograd's kernel as separate matrices (faster);
                     # 3: forward and input gradient, the kernel prepared outside the step, oneDNN
                     # among the candidates (2: without it; 1: the input gradient alone)


class Key(NamedTuple):
    side: int
    c_in: int
    c_out: int
    batch: int
    dtype: str = 'float32'   # the network's precision: 'float32' or 'bfloat16'


def impls(dtype: str = 'float32') -> tuple[str, ...]:
    """The implementations timed in ``dtype``: in bf16 not F(4x4), whose products in bf16 are off by 7%
    of the output's range (F(2x2): 4e-3, as a direct bf16 convolution; docs/performance.md); 'onednn'
    where oneDNN loads (:mod:`jaxvis.backend.onednn`)."""
    own = ('direct', 'winograd2', 'winograd4') if dtype == 'float32' else ('direct', 'winograd2')
    return own + (('onednn',) if onednn.available(dtype) else ())


def machine_id() -> str:
    """The CPU model and jax version the table belongs to."""
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            model = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), '')
    except OSError:
        pass
    return f'{model or platform.processor() or platform.machine()} | {os.cpu_count()} cpus | jax {jax.__version__}'


_TABLE: dict[str, dict[str, float]] = {}   # 'side,c_in,c_out,batch[,bfloat16]' -> {impl: seconds}
_KEEP: list[Callable[[dict], None]] = []    # called with table() after every new measurement


def table() -> dict:
    """``{'machine': machine_id(), 'form': FORM, 'timings': {key: {impl: seconds}}}`` (for keeping on disk)."""
    return {'machine': machine_id(), 'form': FORM, 'timings': {k: dict(v) for k, v in _TABLE.items()}}


def load(data: dict) -> bool:
    """Take timings measured earlier, if they are this machine's and of this :data:`FORM`; returns whether
    they were taken."""
    if not isinstance(data, dict) or data.get('machine') != machine_id() or data.get('form') != FORM:
        return False
    for k, v in (data.get('timings') or {}).items():
        if isinstance(v, dict) and set(v) <= set(IMPLS):
            _TABLE[k] = {impl: float(t) for impl, t in v.items()}
    return True


def clear() -> None:
    """Forget every timing (and stop keeping them: see :func:`keep_with`)."""
    _TABLE.clear()
    _KEEP.clear()


def keep_with(keep: Callable[[dict], None] | None) -> None:
    """Call ``keep(table())`` after every new measurement (None: stop)."""
    _KEEP.clear()
    if keep is not None:
        _KEEP.append(keep)


def measuring() -> bool:
    return os.environ.get('JAXVIS_TUNE', '1') not in ('0', 'off', 'false')


def _key(k: Key) -> str:
    return f'{k.side},{k.c_in},{k.c_out},{k.batch}' + ('' if k.dtype == 'float32' else f',{k.dtype}')


def _as_is(w, impl):
    return w


class Kernel(NamedTuple):
    """What is timed: ``conv(x [N,H,W,C], k, impl) -> [N,H,W,K]`` with ``k = prepare(w [3,3,C,K], impl)``,
    prepared outside the timed step (once per job in the engine)."""
    conv: Callable
    prepare: Callable = _as_is


Conv = Kernel | Callable  # a Kernel, or a plain ``conv(x, w, impl)`` (the kernel used as it is)


def as_kernel(conv: Conv) -> Kernel:
    return conv if isinstance(conv, Kernel) else Kernel(conv)


def timed_step(conv: Conv, impl: str, dtype: str = 'float32') -> Callable:
    """The jitted work timed: ``(x [N,H,W,C], k, ct [N,H,W,K]) -> (y, dx)``, the convolution and its
    input gradient for the cotangent ``ct``. Both are returned: the input gradient of a linear map
    needs no forward, so XLA would drop the forward from a step that returned only ``dx``."""
    kern = as_kernel(conv)

    def fwd_and_grad(x, k, ct):
        y, pull = jax.vjp(lambda a: kern.conv(a, k, impl), x)
        return y, pull(ct)[0]
    return jax.jit(fwd_and_grad, compiler_options=compiler_options(dtype=dtype))


def time_impl(conv: Conv, impl: str, k: Key, timer: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of one forward + input-gradient of a ``k`` convolution (:func:`timed_step`), its
    kernel prepared before the clock starts; each timed run is :func:`calls_per_run` calls. The image
    kernel and cotangent are in ``k.dtype``."""
    kern = as_kernel(conv)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((k.batch, k.side, k.side, k.c_in)), k.dtype)
    w = jax.block_until_ready(kern.prepare(
        jnp.asarray(rng.standard_normal((3, 3, k.c_in, k.c_out)) * 0.05, k.dtype), impl))
    ct = jnp.ones((k.batch, k.side, k.side, k.c_out), k.dtype)
    step = timed_step(kern, impl, k.dtype)
    jax.block_until_ready(step(x, w, ct))
    return statistics.median(per_call(lambda: step(x, w, ct), calls_per_run(k), REPEATS, timer))


def per_call(call: Callable[[], object], calls: int, repeats: int, timer: Callable[[], float]) -> list[float]:
    """Seconds per ``call()`` in each of ``repeats`` timed runs of ``calls`` calls (each waited for)."""
    runs = []
    for _ in range(repeats):
        t0 = timer()
        for _ in range(calls):
            jax.block_until_ready(call())
        runs.append((timer() - t0) / calls)
    return runs


def calls_per_run(k: Key) -> int:
    """Calls in one timed run: enough for :data:`RUN_IMAGES` images (a staged step's one-image
    convolutions take 2-15 ms, too short to time one at a time on a noisy host)."""
    return max(1, RUN_IMAGES // k.batch)


def measure(conv: Conv, k: Key, timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Time every implementation for ``k`` and remember it (the table); returns ``{impl: seconds}``."""
    timings = {impl: time_impl(conv, impl, k, timer) for impl in impls(k.dtype)}
    remember(_key(k), timings)
    return timings


def remember(key: str, timings: dict[str, float]) -> None:
    """Put a measurement in the table (and keep the table: :func:`keep_with`)."""
    _TABLE[key] = timings
    for keep in _KEEP:
        keep(table())


def choose(timings: dict[str, float]) -> str:
    """The fastest implementation; Winograd only if it beats direct by :data:`MARGIN`."""
    best = min(timings, key=timings.get)
    return best if best == 'direct' or timings[best] * MARGIN < timings['direct'] else 'direct'


def best_impl(conv: Conv, side: int, c_in: int, c_out: int, batch: int, default: Callable[[], str],
              timer: Callable[[], float] = time.perf_counter, dtype: str = 'float32') -> str:
    """The measured choice for this convolution in ``dtype`` (measuring ``conv``'s implementations now
    if the table lacks it and measuring is on); ``default()`` when it is off and nothing was measured."""
    k = Key(int(side), int(c_in), int(c_out), int(batch), dtype)
    if c_in < MIN_CHANNELS or side < 2:
        return 'direct'
    timings = kept(_key(k), dtype, lambda: measure(conv, k, timer))
    return default() if timings is None else choose(timings)


def kept(key: str, dtype: str, measure_now: Callable[[], dict[str, float]]) -> dict[str, float] | None:
    """The table's timings for ``key``, of the implementations available here (a table kept where oneDNN
    loaded, read where it does not, never names it). Measured now (``measure_now()``) if measuring is on
    and the table lacks the key or one of :func:`impls` (oneDNN installed since it was measured); None if
    measuring is off and nothing was kept."""
    here, timings = impls(dtype), _TABLE.get(key)
    if (timings is None or not set(here) <= set(timings)) and measuring():
        timings = measure_now()
    return None if timings is None else {impl: t for impl, t in timings.items() if impl in here}
