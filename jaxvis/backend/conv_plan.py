"""Which 3x3 convolutions of a VGG-style network run as Winograd F(4x4, 3x3) or F(2x2, 3x3)
(:mod:`jaxvis.models.winograd`) or as oneDNN's (:mod:`jaxvis.models.onednn_conv`, where it loads)
instead of XLA's own, on CPU.

'auto' asks :mod:`.tune`, which measures each convolution shape on this machine once; with measuring
off (``JAXVIS_TUNE=0``) the static rule below applies in float32, set from per-layer timings on a
2-core AVX2 EPYC at batch 4, 16 and 32 (docs/performance.md), and every bfloat16 convolution stays
direct. In bfloat16 'auto' considers F(2x2) only (:func:`jaxvis.backend.tune.impls`): its products are
bf16 dots, which reach an Intel CPU's AMX tiles (a 'winograd4' asked for by name runs, 7% off in bf16).
On other backends every convolution is XLA's own.
"""
from __future__ import annotations

from jaxvis.backend import onednn, tune, tune_chain
from jaxvis.backend.xla import backend_name
from jaxvis.util import ceil_div

CONV_MODES = ('auto', 'direct', 'winograd2', 'winograd4', 'onednn')
_MIN_CHANNELS_IN = 128   # fewer input channels: the tile transforms cost more than the matmuls save
_MIN_ROWS = {4: 512, 2: 1024}  # matmul rows (batch x tiles) below which F(m) loses to a direct conv


def onednn_missing(dtype: str = 'float32') -> str | None:
    """Why oneDNN cannot run ``dtype``'s convolutions here, in words (None when it can)."""
    if onednn.available(dtype):
        return None
    if not onednn.available():
        return ('needs oneDNN on CPU (pip install onednn-cpu-gomp; JAXVIS_ONEDNN names the library); '
                'it did not load here')
    return f'oneDNN loaded but has no {dtype} convolution on this CPU (bf16 needs AVX-512 BF16 or AMX)'


def conv_plan(convs, batch: int, mode: str = 'auto', dtype: str = 'float32', backend: str | None = None,
              kernel: tune.Conv | None = None, whole: bool = False) -> tuple[tuple[str, str], ...]:
    """``((conv layer, impl), ...)`` for the convolutions that leave 'direct'.

    convs: ``((name, side, c_in, c_out), ...)``: each 3x3 'SAME' convolution with its input side in
      pixels and its channels, in forward order.
    batch: images per operation on one device (the engine's group width, not the job's size).
    mode: 'direct' (none), 'winograd2'/'winograd4'/'onednn' (every conv), or 'auto': on CPU the measured choice
      in ``dtype`` (:func:`jaxvis.backend.tune.best_impl`, which times ``kernel``), or without ``kernel``
      or measuring the static rule (float32) or none (bfloat16); on other backends, none.
    whole: 'auto' times the convolutions as one chain (a staged step's stem,
      :func:`jaxvis.backend.tune_chain.best_chain`) and gives all of them the one choice.
    """
    if mode not in CONV_MODES:
        raise ValueError(f'conv must be one of {CONV_MODES}, got {mode!r}')
    if mode == 'direct' or (mode == 'auto' and (dtype not in ('float32', 'bfloat16')
                                                or backend_name(backend) != 'cpu')):
        return ()
    on_cpu = backend_name(backend) == 'cpu'
    if mode == 'onednn' and (why := onednn_missing(dtype) if on_cpu else 'needs oneDNN on CPU, not this backend'):
        raise ValueError(f"conv='onednn': {why}")
    if mode != 'auto':
        return tuple((name, mode) for name, *_ in convs)
    if whole and kernel is not None and convs and dtype == 'float32':
        keys = [tune.Key(int(side), int(c_in), int(c_out), int(batch)) for _, side, c_in, c_out in convs]
        impl = tune_chain.best_chain(kernel, keys, lambda: None)
        if impl is not None:
            return tuple((name, impl) for (name, *_), k in zip(convs, keys)
                         if impl != 'direct' and tune_chain._impl_of(k, impl) == impl)
    plan = []
    for name, side, c_in, c_out in convs:
        rule = ((lambda side=side, c_in=c_in: static_rule(side, c_in, batch)) if dtype == 'float32'
                else (lambda: 'direct'))
        impl = rule() if kernel is None else tune.best_impl(kernel, side, c_in, c_out, batch, rule, dtype=dtype)
        if impl != 'direct':
            plan.append((name, impl))
    return tuple(plan)


def static_rule(side: int, c_in: int, batch: int) -> str:
    """F4 where ``batch * tiles >= 512``, else F2 where ``>= 1024``, for at least 128 input channels."""
    if c_in < _MIN_CHANNELS_IN:
        return 'direct'
    for m in (4, 2):
        if batch * ceil_div(side, m) ** 2 >= _MIN_ROWS[m]:
            return f'winograd{m}'
    return 'direct'
