"""Configuration of a filter visualization (a frozen dataclass) and the named presets."""
from __future__ import annotations

import dataclasses
from typing import Any

import optax

from jaxvis import param as P
from jaxvis import regularizers as R
from jaxvis import transforms as T
from jaxvis.errors import JaxvisError
from jaxvis.tuning import CONV_MODES


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """How one filter image is optimized. All sizes in pixels, all images in model-input space.

    Update each step (``step`` = 0, 1, ...):
      1. ``loss, g = value_and_grad(objective)(jitter(x))`` (gradient flows back through the jitter);
      2. ``g`` is divided by its RMS when ``normalize == 'rms'`` (seed 003: ``g / (sqrt(mean(g^2)) + 1e-7)``);
      3. ``x += lr * g`` with ``lr = step_size`` (``lr_policy='constant'``) or, with ``'progress'``,
         ``lr = min(max_lr, desired_progress / sum(g^2))`` (deep-visualization-toolbox); or, if ``optimizer``
         is an optax transformation, its update of the negated gradient;
      4. the regularizers, in this order: decay, blur (Gaussian every ``blur_every`` steps, or a box),
         small-value clip, small-norm clip, small-contribution clip; or ``regularizer`` when given,
         which replaces all of them (seed 000's weighted average is such a one).
    ``conv`` picks the convolution algorithms (:func:`jaxvis.tuning.conv_plan`): 'auto' runs the deeper
    VGG convs as Winograd on CPU where measured faster (XLA's own elsewhere), 'direct' never.
    The start image is ``init_offset + init_scale * U[0, 1)`` (or ``N(0, 1)`` with ``init_dist='normal'``)
    in model-input space; seed 003's ``(U - 0.5) * 20 + 128`` is offset 118, scale 20.
    """

    steps: int = 20
    step_size: float = 1.0
    normalize: str = 'rms'            # 'rms' | 'none'
    lr_policy: str = 'constant'       # 'constant' | 'progress'
    max_lr: float = 100.0
    desired_progress: float = 2.0
    decay: float = 0.0
    blur_sigma: float = 0.0
    blur_every: int = 1
    blur_box: int = 0                 # > 0: a box blur of this size instead of the Gaussian
    value_pct: float = 0.0
    norm_pct: float = 0.0
    contrib_pct: float = 0.0
    jitter: int = 0
    init_offset: float = 118.0
    init_scale: float = 20.0
    init_dist: str = 'uniform'        # 'uniform' | 'normal'
    optimizer: optax.GradientTransformation | None = None
    regularizer: R.Regularizer | None = None
    dtype: str = 'float32'            # 'bfloat16': convs in bf16 (fp32 params, image and loss)
    conv: str = 'auto'                # convolution algorithms: 'auto' | 'direct' | 'winograd2' | 'winograd4'
    # Lucid-style options (None/0 keep the seeds' pixel ascent):
    param: P.Param | None = None      # optimize this parameterization's params instead of pixels
    transform: T.Transform | None = None  # (key, [H,W,3] RGB in [0,1]) -> image, before the model
    objective: Any = None             # layer -> Objective (e.g. jaxvis.objectives.neuron); None: channel mean
    redirect_relu_steps: int = 0      # Lucid's redirected ReLU gradient for the first k steps (16 in Lucid)

    def __post_init__(self):
        if self.steps < 1:
            raise JaxvisError(f'steps must be >= 1, got {self.steps}')
        for name, allowed in (('normalize', ('rms', 'none')), ('lr_policy', ('constant', 'progress')),
                              ('init_dist', ('uniform', 'normal')), ('dtype', ('float32', 'bfloat16')),
                              ('conv', CONV_MODES)):
            if getattr(self, name) not in allowed:
                raise JaxvisError(f'{name} must be one of {allowed}, got {getattr(self, name)!r}')
        for name in ('value_pct', 'norm_pct', 'contrib_pct'):
            if not 0 <= getattr(self, name) < 100:
                raise JaxvisError(f'{name} must be in [0, 100), got {getattr(self, name)}')
        if not 0 <= self.decay < 1:
            raise JaxvisError(f'decay must be in [0, 1), got {self.decay}')
        if self.param is not None and self.build_regularizer().name != 'identity':
            raise JaxvisError('regularizers act on pixels: they cannot be combined with a param')
        if self.redirect_relu_steps < 0:
            raise JaxvisError(f'redirect_relu_steps must be >= 0, got {self.redirect_relu_steps}')

    def build_regularizer(self) -> R.Regularizer:
        if self.regularizer is not None:
            return self.regularizer
        regs = []
        if self.decay:
            regs.append(R.decay(self.decay))
        if self.blur_box:
            regs.append(R.box_blur(self.blur_box, self.blur_every))
        elif self.blur_sigma > 0 and self.blur_every > 0:
            regs.append(R.gaussian_blur(self.blur_sigma, self.blur_every))
        if self.value_pct:
            regs.append(R.clip_small_value(self.value_pct))
        if self.norm_pct:
            regs.append(R.clip_small_norm(self.norm_pct))
        if self.contrib_pct:
            regs.append(R.clip_small_contribution(self.contrib_pct))
        return R.chain(*regs) if regs else R.identity()

    def build_transform(self) -> T.Transform:
        return T.jitter(self.jitter)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (for manifests)."""
        d = dataclasses.asdict(self)
        d['optimizer'] = None if self.optimizer is None else repr(self.optimizer)
        d['regularizer'] = self.build_regularizer().name
        d['param'] = None if self.param is None else self.param.name
        for name in ('transform', 'objective'):
            fn = getattr(self, name)
            d[name] = None if fn is None else getattr(fn, '__name__', repr(fn))
        return d


def _seed() -> FilterConfig:
    """Seed 003 exactly: 20 steps of RMS-normalized ascent, step 1, no regularizer, start (U-0.5)*20+128."""
    return FilterConfig()


def _jacobgil() -> FilterConfig:
    """Seed 000's combination: step 0.9, then the 3:3:1 weighted mean of a 3x3 box blur, x*0.8 and
    zeroing values under the 1st percentile of |x|; start U*20+128 (jacobgil/keras-filter-visualization)."""
    reg = R.average((3.0, R.box_blur(3)), (3.0, R.decay(0.2)), (1.0, R.clip_small_value(1.0)))
    return FilterConfig(steps=20, step_size=0.9, regularizer=reg, init_offset=128.0, init_scale=20.0)


# Table 1 of Yosinski et al. 2015, with the iterations and learning rates its toolbox documents
# (deep-visualization-toolbox, doc/optimize_image.md). Raw (un-normalized) gradients, start at the mean
# image plus N(0, 1) noise, as the toolbox's 'mean_plus_rand'.
_YOSINSKI = {
    1: dict(decay=0.0, blur_sigma=0.5, blur_every=4, norm_pct=50.0, steps=500, lr_policy='progress',
            max_lr=100.0, desired_progress=2.0),
    2: dict(decay=0.3, norm_pct=20.0, steps=750, step_size=100.0),
    3: dict(decay=0.0001, blur_sigma=1.0, blur_every=4, steps=1000, step_size=100.0),
    4: dict(decay=0.0, blur_sigma=0.5, blur_every=4, contrib_pct=90.0, steps=1000, lr_policy='progress',
            max_lr=1e8, desired_progress=2.0),
}


def _yosinski(row: int) -> FilterConfig:
    return FilterConfig(normalize='none', init_offset=0.0, init_scale=1.0, init_dist='normal', **_YOSINSKI[row])


def _lucid() -> FilterConfig:
    """Lucid's defaults (``render_vis`` with ``param.image(fft=True, decorrelate=True)``): a 1/f-scaled
    Fourier image in decorrelated colour through a sigmoid, Lucid's standard transforms, Adam(0.05) on the
    raw gradient, the redirected ReLU gradient for 16 steps. Lucid runs 512 steps; 256 here (on VGG16
    at 128 px the pattern has formed by about step 32: docs/presets.md); pass ``steps=512`` for Lucid's."""
    return FilterConfig(steps=256, normalize='none', optimizer=optax.adam(0.05), param=P.image(),
                        transform=T.standard_transforms(), redirect_relu_steps=16)


PRESETS = {
    'seed': _seed,
    'jacobgil': _jacobgil,
    'yosinski1': lambda: _yosinski(1),
    'yosinski2': lambda: _yosinski(2),
    'yosinski3': lambda: _yosinski(3),
    'yosinski4': lambda: _yosinski(4),
    'lucid': _lucid,
}


def preset(name: str, **overrides) -> FilterConfig:
    """The named preset's :class:`FilterConfig`, with fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise JaxvisError(f'unknown preset {name!r}; presets: {", ".join(PRESETS)}')
    cfg = PRESETS[name]()
    unknown = set(overrides) - {f.name for f in dataclasses.fields(FilterConfig)}
    if unknown:
        raise JaxvisError(f'unknown option(s) {", ".join(sorted(unknown))}')
    return dataclasses.replace(cfg, **overrides)
