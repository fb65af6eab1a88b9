"""Named recipes: plain functions from options to a :class:`~jaxvis.visualize.config.FilterConfig`.

Pixel recipes (the seeds', Yosinski's) are built by :func:`pixel_recipe` from a few numbers (step size,
decay, blur, clips, jitter, start noise); Lucid's by :func:`lucid`. :func:`preset` takes a name and
options; an option a recipe does not have is refused in one line, and any piece (``optimizer=``,
``regularizer=``, ``transform=``, ``param=``, ``objective=``) can be replaced whole.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from jaxvis import optim
from jaxvis import param as P
from jaxvis import penalties as L
from jaxvis import regularizers as R
from jaxvis import transforms as T
from jaxvis.errors import JaxvisError
from jaxvis.util import check_choice, check_float, check_int
from jaxvis.visualize.config import FilterConfig

PIECES = ('steps', 'param', 'optimizer', 'regularizer', 'transform', 'objective', 'redirect_relu_steps', 'restarts',
          'restart_param', 'dtype')
# The quality presets' dead-filter rule: the redirected ReLU on every step (it changes only the gradient of
# an image whose ReLU passes none, so a live filter's steps are the plain ones, bit for bit), and a filter
# whose gradient is exactly 0 at step 16, 32 or 48 (stuck) restarts from a fresh picture (param.maco's for
# lucid). Restarting every filter still <= 0 threw away the redirect's gains (docs/presets.md).
RESTARTS = (16, 32, 48)
PIXEL_KNOBS = dict(step_size=1.0, normalize='rms', lr_policy='constant', max_lr=100.0, desired_progress=2.0,
                   decay=0.0, blur_sigma=0.0, blur_every=1, blur_box=0, value_pct=0.0, norm_pct=0.0,
                   contrib_pct=0.0, jitter=0, init_offset=118.0, init_scale=20.0, init_dist='uniform')
REGULARIZER_KNOBS = ('decay', 'blur_sigma', 'blur_every', 'blur_box', 'value_pct', 'norm_pct', 'contrib_pct')


def pixel_regularizer(*, decay=0.0, blur_sigma=0.0, blur_every=1, blur_box=0, value_pct=0.0, norm_pct=0.0,
                      contrib_pct=0.0) -> R.Regularizer:
    """Yosinski et al.'s regularizers, in this order: decay, blur (a box of ``blur_box`` or a Gaussian of
    ``blur_sigma`` every ``blur_every`` steps), small-value, small-norm and small-contribution clips."""
    R.check_every(blur_every)  # also when no blur is asked for: a wrong value is a mistake
    regs = []
    if decay:
        regs.append(R.decay(decay))
    if blur_box:
        regs.append(R.box_blur(blur_box, blur_every))
    elif blur_sigma:
        regs.append(R.gaussian_blur(blur_sigma, blur_every))
    if value_pct:
        regs.append(R.clip_small_value(value_pct))
    if norm_pct:
        regs.append(R.clip_small_norm(norm_pct))
    if contrib_pct:
        regs.append(R.clip_small_contribution(contrib_pct))
    return R.chain(*regs)


def pixel_recipe(name: str = 'custom', *, steps: int = 20, optimizer=None, regularizer=None, transform=None,
                 param=None, objective=None, redirect_relu_steps: int = 0, dtype: str = 'float32',
                 **knobs) -> FilterConfig:
    """A recipe that optimizes model-input pixels (the seeds'), from the numbers in :data:`PIXEL_KNOBS`.

    The update is :func:`jaxvis.optim.ascent` (``step_size``, ``normalize``, ``lr_policy``, ...); an
    ``optimizer`` replaces its step (after the RMS normalization when ``normalize='rms'``). The
    regularizer is :func:`pixel_regularizer` of the knobs unless ``regularizer`` is given (then no
    regularizer knob may be). ``jitter`` is a roll of up to that many pixels before the forward pass.
    """
    unknown = set(knobs) - set(PIXEL_KNOBS)
    if unknown:
        raise JaxvisError(f'unknown option(s) {", ".join(sorted(unknown))}')
    k = {**PIXEL_KNOBS, **knobs}
    check_choice('normalize', k['normalize'], ('rms', 'none'))
    check_choice('lr_policy', k['lr_policy'], ('constant', 'progress'))
    check_choice('init_dist', k['init_dist'], ('uniform', 'normal'))
    check_float('step_size', k['step_size'], low=0.0, low_open=True)
    if regularizer is None:
        regularizer = pixel_regularizer(**{n: k[n] for n in REGULARIZER_KNOBS})
    elif set(knobs) & set(REGULARIZER_KNOBS):
        raise JaxvisError(f'pass either regularizer= or {", ".join(sorted(set(knobs) & set(REGULARIZER_KNOBS)))}, '
                          'not both')
    if optimizer is None:
        optimizer = optim.ascent(float(k['step_size']), normalize=k['normalize'], lr_policy=k['lr_policy'],
                                 max_lr=float(k['max_lr']), desired_progress=float(k['desired_progress']))
    elif k['normalize'] == 'rms':
        optimizer = optim.chain(optim.scale_by_rms(), optimizer)
    return FilterConfig(
        steps=check_int('steps', steps, low=1),
        param=param or P.pixels(offset=float(k['init_offset']), scale=float(k['init_scale']), dist=k['init_dist']),
        optimizer=optimizer, regularizer=regularizer, transform=transform or T.jitter(k['jitter']),
        redirect_relu_steps=redirect_relu_steps, dtype=dtype, name=name,
        **({'objective': objective} if objective is not None else {}))


def seed(**options) -> FilterConfig:
    """Seed 003 exactly: 20 steps of RMS-normalized ascent, step 1, no regularizer, start (U-0.5)*20+128."""
    return pixel_recipe('seed', **options)


def jacobgil(**options) -> FilterConfig:
    """Seed 000's combination: step 0.9, then the 3:3:1 weighted mean of a 3x3 box blur, ``x*0.8`` and
    zeroing values under the 1st percentile of ``|x|``; start ``U*20+128`` (jacobgil/keras-filter-visualization).
    Its regularizer is that fixed average: pass ``regularizer=`` to replace it."""
    fixed = set(options) & set(REGULARIZER_KNOBS)
    if fixed:
        raise JaxvisError(f"preset jacobgil has seed 000's fixed regularizer; it takes no {', '.join(sorted(fixed))}")
    reg = R.average((3.0, R.box_blur(3)), (3.0, R.decay(0.2)), (1.0, R.clip_small_value(1.0)))
    return pixel_recipe('jacobgil', **{'steps': 20, 'step_size': 0.9, 'regularizer': reg, 'init_offset': 128.0,
                                       'init_scale': 20.0, **options})


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


def yosinski(row: int, **options) -> FilterConfig:
    """Row ``row`` (1..4) of Yosinski et al. 2015's Table 1 (decay, blur radius/every, norm and
    contribution clips), with the deep-visualization-toolbox's iterations and learning rates."""
    return pixel_recipe(f'yosinski{row}', **{'normalize': 'none', 'init_offset': 0.0, 'init_scale': 1.0,
                                             'init_dist': 'normal', **_YOSINSKI[row], **options})


def _no_pixel_options(name: str, options: dict) -> None:
    bad = set(options) - set(PIECES)
    if bad:
        raise JaxvisError(f'preset {name} takes no {", ".join(sorted(bad))} (its image is a Fourier param '
                          'with its own transforms; pixel options do not apply)')


def lucid(*, steps: int = 256, step_size: float = 0.05, rescue: FilterConfig | bool = True, fixed_image_size=None,
          **options) -> FilterConfig:
    """Lucid's defaults (``render_vis`` with ``param.image(fft=True, decorrelate=True)``): a 1/f-scaled
    Fourier image in decorrelated colour through a sigmoid, Lucid's standard transforms, Adam 0.05 on the
    raw gradient; ``fixed_image_size`` as Lucent's (:func:`jaxvis.transforms.fixed_size` last; None, the
    network sees 12 px more). 256 steps, not Lucid's 512 (the pattern forms by about step 32:
    docs/presets.md). Beyond Lucid, the dead-filter rule (:data:`RESTARTS`), and a filter still dead at
    the end is rerun without the transforms (``rescue``: True, the same config with ``transform=identity()``
    from the same key; False, none; or a config): Lucid's transforms keep some block5_conv1 filters below
    0 that fire on the plain image (docs/presets.md). A filter that fires is untouched."""
    _no_pixel_options('lucid', options)
    pieces = {'param': P.image(), 'optimizer': optim.adam(float(step_size)), 'transform': T.standard_transforms(),
              'redirect_relu_steps': steps, 'restarts': RESTARTS, 'restart_param': P.maco(), **options}
    if fixed_image_size is not None:
        pieces['transform'] = T.compose(pieces['transform'], T.fixed_size(fixed_image_size))
    return _with_rescue(FilterConfig(steps=check_int('steps', steps, low=1), name='lucid', **pieces), rescue)


def _with_rescue(cfg: FilterConfig, rescue: FilterConfig | bool) -> FilterConfig:
    """``cfg`` with its rescue: True, the same config without transforms; False, none; or the given one."""
    if rescue is True:
        rescue = dataclasses.replace(cfg, transform=T.identity())
    return dataclasses.replace(cfg, rescue=rescue or None)


def maco(*, steps: int = 256, step_size: float = 1.0, crops: int = 4, box: float = 0.5, noise: float = 0.04,
         rescue: FilterConfig | bool = True, **options) -> FilterConfig:
    """MACO (Fel et al. 2023; Xplique's ``maco``): only the phase of the image's spectrum is optimized,
    its magnitude fixed to natural photos' (:func:`jaxvis.param.maco`); each step the objective is the
    mean over ``crops`` random crops of mean side ``box`` with noise (:func:`jaxvis.transforms.maco_crops`);
    NAdam (``step_size`` 1.0, Xplique's and Horama's); 256 steps (Xplique's). The result's ``alpha`` is
    the accumulated gradient magnitude (the transparency). Xplique takes 32 crops per step (Horama 6) and
    decays the box from 0.5 to 0.05; here 4 crops of a fixed 0.5 by default, for CPU cost (one step costs
    ``crops`` forward and backward passes). Plus the dead-filter rule (:data:`RESTARTS`): the redirected
    ReLU on every step, and a stuck filter restarts from the param's own init with a new key. And, as in
    :func:`lucid`, a filter still dead at the end is rerun on the whole image, without the crops
    (``rescue``: True by default, False for none, or a config); its alpha is then the rerun's."""
    _no_pixel_options('maco', options)
    pieces = {'param': P.maco(), 'optimizer': optim.nadam(float(step_size)),
              'transform': T.maco_crops(int(crops), box=float(box), noise=float(noise)),
              'redirect_relu_steps': steps, 'restarts': RESTARTS, **options}
    return _with_rescue(FilterConfig(steps=check_int('steps', steps, low=1), name='maco', **pieces), rescue)


# keras-vis 0.4.1's start: ``utils.random_array(shape, mean=127.5, std=0.05 * 255)``, uniform noise standardized
# to that mean and std; as offset + scale * U[0, 1): scale = sqrt(12) * 12.75, offset = 127.5 - scale / 2.
KERAS_VIS_SCALE = 12.75 * 12 ** 0.5


def keras_vis(*, steps: int = 200, jitter: int = 16, lp_norm_weight: float = 10.0, tv_weight: float = 10.0,
              **options) -> FilterConfig:
    """Seed 004: keras-vis 0.4.1's ``visualize_activation(model, layer_idx, filter_indices=f,
    input_modifiers=[Jitter(16)])`` with its defaults (read in the wheel on PyPI, ``keras_vis-0.4.1``):

    * loss (minimized) ``1 * ActivationMaximization + 10 * LPNorm + 10 * TotalVariation``
      (``visualize_activation``'s ``act_max_weight=1, lp_norm_weight=10, tv_weight=10``,
      vis/visualization/activation_maximization.py lines 55, 96-100). ActivationMaximization is
      ``-K.mean(layer_output[..., f])`` (vis/losses.py 88): :func:`jaxvis.objectives.channel`.
      ``LPNorm(p=6.)`` is ``(sum |x|^6)^(1/6)`` and ``TotalVariation(beta=2.)`` is
      ``sum (dh^2 + dw^2)^(beta/2)`` over ``[:-1, :-1]``, both divided by ``H * W * C``
      (vis/regularizers.py 11-24 ``normalize``, 29, 71-72, 77, 99-101): :mod:`jaxvis.penalties`,
      on the model-input pixels, added as gradients by :func:`jaxvis.optim.add_penalty_gradient`;
    * ``max_iter=200`` (activation_maximization.py 36; vis/optimizer.py 99);
    * the update: the loss's gradient divided by ``sqrt(mean(g^2)) + K.epsilon()`` (``norm_grads=True``,
      optimizer.py 20, 54: :func:`jaxvis.optim.scale_by_rms`), then ``_rmsprop`` with
      ``decay_rate=0.95``, learning rate 1 (optimizer.py 60-78, 163: :func:`jaxvis.optim.keras_vis_rmsprop`);
    * ``input_range=(0, 255)``, and the optimized image is the model input itself, unpreprocessed
      (keras' VGG16 takes caffe BGR-minus-mean input: this is jaxvis's ``'input'`` pixel space on VGG);
    * ``seed_input=None``: ``random_array(mean=127.5, std=0.05 * 255)`` (optimizer.py 87-88; vis/utils/utils.py
      129-144), uniform noise standardized to that mean and std; here ``127.5 + 44.17 * (U - 0.5)``, the
      same population mean and std (keras-vis uses the sample's);
    * ``Jitter(16)``: 16 >= 1 is pixels; each iteration the image is shifted by ``randint(-16, 17)`` per
      axis with wrap-around before the gradient (vis/input_modifiers.py 48-94): :func:`jaxvis.transforms.jitter`.

    Differences: keras-vis leaves its image shifted (the shifts add up, so its RMSProp cache stays in
    place while the picture moves); here the roll is undone (only the gradient goes through it), so
    the picture is the same up to a wrap-around shift. keras-vis returns the iterate of lowest total
    loss, here the last one. Its ``deprocess_input`` (std 0.1 around 0.5, clipped; utils.py 168-189) acts on
    the raw BGR input, whose channels share one mean, and its JPGs (``plt.imsave``) show BGR as RGB; jaxvis
    shows RGB with VGG's mean added back, so the CLI displays this preset with ``--normalize centred``
    (each channel's mean removed, then ``deprocess_input``), else a flat colour hides the pattern. Seed 004
    draws filters with replacement (``random.choices``); ``--filters random:6`` draws distinct ones.
    """
    bad = set(options) - set(PIECES)
    if bad:
        raise JaxvisError(f'preset keras-vis takes no {", ".join(sorted(bad))} (its options: steps, jitter, '
                          'lp_norm_weight, tv_weight)')
    lp_w = check_float('lp_norm_weight', lp_norm_weight, low=0.0)
    tv_w = check_float('tv_weight', tv_weight, low=0.0)
    penalties = [optim.add_penalty_gradient(pen, w) for pen, w in ((L.lp_norm(6.0), lp_w),
                                                                  (L.total_variation(2.0), tv_w)) if w]
    pieces = {'param': P.pixels(offset=127.5 - KERAS_VIS_SCALE / 2, scale=KERAS_VIS_SCALE, dist='uniform'),
              'optimizer': optim.chain(*penalties, optim.scale_by_rms(), optim.keras_vis_rmsprop(0.95)),
              'transform': T.jitter(jitter), **options}
    return FilterConfig(steps=check_int('steps', steps, low=1), name='keras-vis', **pieces)


PRESETS: dict[str, Callable[..., FilterConfig]] = {
    'seed': seed,
    'jacobgil': jacobgil,
    **{f'yosinski{row}': functools.partial(yosinski, row) for row in (1, 2, 3, 4)},
    'lucid': lucid,
    'maco': maco,
    'keras-vis': keras_vis,
}


def preset(name: str, **options) -> FilterConfig:
    """The named preset's :class:`FilterConfig`, built with ``options`` (``steps=``, ``decay=``,
    ``jitter=``, ``optimizer=``, ...). Raises JaxvisError for an unknown name or option."""
    if name not in PRESETS:
        raise JaxvisError(f'unknown preset {name!r}; presets: {", ".join(PRESETS)}')
    options = {k: v for k, v in options.items() if v is not None}
    return PRESETS[name](**options)
