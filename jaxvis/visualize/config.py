"""How one filter image is optimized: a frozen dataclass of composed pieces.

Each step (``t`` = 0, 1, ...), for the image's params ``p``:

1. ``img = param.to_image(p)``; the model input is ``transform(key_t, img)`` for the seeds' pixels
   (``param.space == 'input'``: VGG's caffe input units, which another model sees through its own
   preprocessing, :func:`jaxvis.visualize.start.pixel_maps`), else ``preprocess(255 * transform(key_t,
   img))`` (RGB in [0, 1], Lucid's params);
2. ``loss, g = value_and_grad(objective)`` of that input (gradients flow back through the transform);
3. ``updates = optimizer.update(-g)``, ``p = p + updates`` (any optax transformation; jaxvis maximizes,
   so the optimizer sees the gradient of ``-objective``; :mod:`jaxvis.optim` has the seeds' rules);
4. ``p = regularizer.apply(p, g, t)`` (only for params in the model's input space).

``key_t = fold_in(filter_key, t + 1)``; the start is ``param.init(fold_in(filter_key, 0), (H, W, 3))``.
With ``redirect_relu_steps = k`` the ReLUs pass Lucid's redirected gradient for the first ``k`` steps.
A transform may return several views ``[K, H', W', 3]`` of the image (MACO's crops); the objective then
averages over them. ``restarts``: at each of these steps, a filter whose gradient is exactly 0 (stuck:
a dead ReLU filter without the redirect, a logit that cannot move) starts again from a fresh start drawn
with a key derived from its own
(:func:`jaxvis.visualize.start.restart_point`; ``restart_param``'s picture if given), optimizer state reset.
A param with ``accumulate`` (MACO's) also gets the gradient with respect to its image each step.
``rescue``: a second config (same steps and param) for the filters this one leaves dead: the engine reruns
each of them with it, from the same key and start, and keeps the rerun where it fires
(:func:`jaxvis.visualize.result.with_rescue`); filters that fire are untouched.
``dtype='bfloat16'`` runs the network in bf16 (params, image and update stay float32).

Every piece comes from a cached factory, so two configs built from the same preset and options are
equal (and hash equal), and the engine reuses their compiled steps.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax

from jaxvis import objectives as O
from jaxvis import optim
from jaxvis import param as P
from jaxvis import regularizers as R
from jaxvis import transforms as T
from jaxvis.errors import JaxvisError
from jaxvis.models.forward import DTYPES
from jaxvis.util import check_choice, check_int


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """See the module docstring. Presets (:func:`jaxvis.visualize.presets.preset`) build these."""

    steps: int = 20
    param: P.Param = dataclasses.field(default_factory=P.pixels)
    optimizer: optax.GradientTransformation = dataclasses.field(default_factory=optim.ascent)
    regularizer: R.Regularizer = dataclasses.field(default_factory=R.identity)
    transform: T.Transform = dataclasses.field(default_factory=T.identity)
    objective: Callable[[str], Any] = O.channel   # layer -> Objective; f is the filter
    redirect_relu_steps: int = 0
    restarts: tuple[int, ...] = ()     # steps at which a dead filter restarts
    restart_param: P.Param | None = None   # draws the restart's picture (None: param.init)
    rescue: 'FilterConfig | None' = None   # reruns the filters this config leaves dead
    dtype: str = 'float32'
    name: str = 'custom'               # the preset it came from, for manifests

    def __post_init__(self):
        check_int('steps', self.steps, low=1)
        check_int('redirect_relu_steps', self.redirect_relu_steps, low=0)
        check_choice('dtype', self.dtype, DTYPES)
        if not isinstance(self.restarts, tuple):
            raise JaxvisError(f'restarts must be a tuple of steps, got {type(self.restarts).__name__}')
        for t in self.restarts:
            check_int('restart step', t, low=1)
        if self.restart_param is not None and self.restart_param.space != self.param.space:
            raise JaxvisError(f'restart_param {self.restart_param.name} draws {self.restart_param.space} '
                              f'pictures; the param {self.param.name} needs {self.param.space}')
        if self.rescue is not None:
            if not isinstance(self.rescue, FilterConfig) or self.rescue.rescue is not None:
                raise JaxvisError('rescue must be a FilterConfig without a rescue of its own')
            if (self.rescue.steps, self.rescue.param) != (self.steps, self.param):
                raise JaxvisError(f'rescue must have the same steps ({self.steps}) and param ({self.param.name})')
        if self.param.space not in ('input', 'rgb01'):
            raise JaxvisError(f"param.space must be 'input' or 'rgb01', got {self.param.space!r}")
        if self.param.space != 'input' and self.regularizer is not R.identity():
            raise JaxvisError('regularizers act on model-input pixels: they cannot be combined with '
                              f'the param {self.param.name}')

    @property
    def redirect(self) -> bool:
        return self.redirect_relu_steps > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (for manifests)."""
        return {'preset': self.name, 'steps': self.steps, 'param': self.param.name,
                'optimizer': optim.describe(self.optimizer), 'regularizer': self.regularizer.name,
                'transform': getattr(self.transform, '__name__', repr(self.transform)),
                'objective': getattr(self.objective, '__name__', repr(self.objective)),
                'redirect_relu_steps': self.redirect_relu_steps, 'restarts': list(self.restarts),
                'restart_param': None if self.restart_param is None else self.restart_param.name,
                'rescue': None if self.rescue is None else self.rescue.to_dict(),
                'dtype': self.dtype}
