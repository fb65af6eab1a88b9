"""Winograd convolutions against a plain numpy convolution and lax; the per-layer plan; CPU options."""
import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.backend import conv_plan as tuning_plan
from jaxvis.backend import xla as tuning
from jaxvis.errors import JaxvisError
from jaxvis.models import VGG16_BLOCKS, TinyVGG, get_model
from jaxvis.models import vgg, vgg_layers, winograd
from jaxvis.models.vgg import _convs, prepare_params
from jaxvis.models.winograd import (conv3x3, conv3x3_direct, conv3x3_prepared, conv3x3_winograd, kernel_transform,
                                    prepare)
from jaxvis.visualize import engine, preset, staged, visualize_filters

# Relative to the output's largest magnitude; measured about 2e-6 (F2) and 2e-5 (F4) on VGG-sized layers.
TOL = {2: 1e-5, 4: 1e-4}


def numpy_conv(x, w):
    """3x3 'SAME' stride-1 convolution (cross-correlation, as lax and Keras) by plain loops over taps."""
    n, h, wd, _ = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, wd, w.shape[-1]))
    for i in range(3):
        for j in range(3):
            out += np.einsum('nhwc,ck->nhwk', xp[:, i:i + h, j:j + wd], w[i, j].astype(np.float64))
    return out


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize('m', [2, 4])
@pytest.mark.parametrize('shape', [(2, 8, 8, 5, 7), (1, 5, 7, 3, 4), (3, 1, 1, 2, 2), (1, 13, 6, 16, 8)])
def test_forward_matches_numpy(m, shape):
    n, h, w, c, k = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kern = rng.standard_normal((3, 3, c, k)).astype(np.float32)
    ref = numpy_conv(x, kern)
    assert conv3x3_winograd(x, kern, m).shape == (n, h, w, k)
    assert rel_err(conv3x3_winograd(x, kern, m), ref) < TOL[m]
    assert rel_err(conv3x3_direct(x, kern), ref) < 1e-5


def test_exact_small_array():
    """A 2x2 all-ones kernel tap pattern on a 4x4 ramp: every value checked by hand-countable sums."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    w = np.zeros((3, 3, 1, 1), np.float32)
    w[1, 1] = 1.0   # centre tap: identity
    w[1, 2] = 10.0  # right neighbour
    want = x[0, :, :, 0] + 10 * np.pad(x[0, :, 1:, 0], ((0, 0), (0, 1)))
    for m in (2, 4):
        np.testing.assert_allclose(np.asarray(conv3x3_winograd(x, w, m))[0, :, :, 0], want, rtol=1e-6, atol=1e-4)


def _dots(jaxpr):
    """Every dot_general of a (closed) jaxpr and its sub-jaxprs: ``(operand dtypes, result dtype)``."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == 'dot_general':
            out.append((tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.outvars[0].aval.dtype)))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            out += _dots(sub)
    return out


def test_bf16_winograd_products_are_bf16_dots_with_fp32_results():
    """In bf16, F(2x2)'s products are bf16 dots with float32 results (YNNPACK's, AMX where the CPU has
    it) around float32 transforms: the output (bf16) and the input gradient stay within bf16 rounding of
    the exact convolution of the same bf16 numbers."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 12, 12, 16)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((3, 3, 16, 8)) * 0.2, jnp.bfloat16)
    xf, wf = np.asarray(x, np.float32), np.asarray(w, np.float32)
    k = prepare(w, 'winograd2')
    y = conv3x3_prepared(x, k, 'winograd2')
    assert y.dtype == jnp.bfloat16
    assert rel_err(y, numpy_conv(xf, wf)) < 1e-2
    dots = _dots(jax.make_jaxpr(lambda x: conv3x3_prepared(x, k, 'winograd2'))(x).jaxpr)
    assert len(dots) == 16 and set(dots) == {(('bfloat16', 'bfloat16'), 'float32')}
    ct = jnp.asarray(rng.standard_normal((2, 12, 12, 8)), jnp.bfloat16)
    _, pull = jax.vjp(lambda a: conv3x3_prepared(a, k, 'winograd2'), x)
    want = jax.vjp(lambda a: conv3x3_direct(a, jnp.asarray(wf)), jnp.asarray(xf))[1](jnp.asarray(ct, jnp.float32))[0]
    assert rel_err(pull(ct)[0], np.asarray(want)) < 1e-2
    # float32 stays float32 throughout
    f32_dots = _dots(jax.make_jaxpr(lambda x: conv3x3_winograd(x, wf, 2))(xf).jaxpr)
    assert set(f32_dots) == {(('float32', 'float32'), 'float32')}


@pytest.mark.parametrize('m', [2, 4])
def test_gradients_match_direct(m):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 6, 10, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 3)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((2, 6, 10, 3)), jnp.float32)

    def loss(conv):
        return lambda x, w: jnp.sum(conv(x, w) * ct)

    gx, gw = jax.jit(jax.grad(loss(lambda x, w: conv3x3_winograd(x, w, m)), argnums=(0, 1)))(x, w)  # not op by op
    rx, rw = jax.grad(loss(conv3x3_direct), argnums=(0, 1))(x, w)
    assert rel_err(gx, np.asarray(rx, np.float64)) < TOL[m]
    assert rel_err(gw, np.asarray(rw, np.float64)) < 1e-5


@pytest.mark.parametrize('m', [2, 4])
def test_jit_and_vmap_equal_eager(m):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)
    eager = np.asarray(conv3x3_winograd(x, w, m), np.float64)  # op by op: XLA fuses differently under jit
    assert rel_err(jax.jit(conv3x3_winograd, static_argnums=2)(x, w, m), eager) < TOL[m] / 10
    per_image = jax.vmap(lambda xi: conv3x3_winograd(xi[None], w, m)[0])(x)
    assert rel_err(per_image, eager) < TOL[m] / 10


@pytest.mark.parametrize('m', [2, 4])
def test_prepared_kernel_same_convolution_and_gradients(m):
    """The kernel transformed once (prepare) computes the same convolution; the gradient with respect to
    the image, and with respect to the kernel through ``prepare``, match the direct convolution's."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((2, 7, 9, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 5, 6)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((2, 7, 9, 6)), jnp.float32)
    impl = f'winograd{m}'
    u, ub = prepare(w, impl)
    t = m + 2   # (m + 2)^2 separate matrices, row-major over the tile positions: [C, K], and [K, C] for ub
    assert len(u) == len(ub) == t * t and {v.shape for v in u} == {(5, 6)} and {v.shape for v in ub} == {(6, 5)}
    np.testing.assert_array_equal(u[t + 2], kernel_transform(w, m)[1, 2])
    conv = jax.jit(conv3x3_prepared, static_argnums=2)   # jitted: op by op, each of ~600 ops compiles alone
    assert rel_err(conv(x, (u, ub), impl), numpy_conv(np.asarray(x), np.asarray(w))) < TOL[m]
    np.testing.assert_allclose(conv(x, (u, ub), impl), jax.jit(conv3x3_winograd, static_argnums=2)(x, w, m),
                               rtol=1e-5, atol=1e-5)

    def loss(conv):
        return lambda x, w: jnp.sum(conv(x, w) * ct)

    gx, gw = jax.jit(jax.grad(loss(lambda x, w: conv3x3_prepared(x, prepare(w, impl), impl)), argnums=(0, 1)))(x, w)
    rx, rw = jax.grad(loss(conv3x3_direct), argnums=(0, 1))(x, w)
    assert rel_err(gx, np.asarray(rx, np.float64)) < TOL[m]
    assert rel_err(gw, np.asarray(rw, np.float64)) < TOL[m]
    assert prepare(w, 'direct') is w
    np.testing.assert_array_equal(conv3x3_prepared(x, w, 'direct'), conv3x3_direct(x, w))


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason="XLA:CPU's einsum order (another backend may use TF32)")
@pytest.mark.parametrize('m', [2, 4])
def test_prepare_in_numpy_gives_xlas_bytes(m, monkeypatch):
    """The engine's prepare (concrete kernels: numpy, nothing compiled) gives bitwise (sign bits too) the
    matrices XLA:CPU computes when prepare is traced (under jit), forward and input-gradient kernels."""
    rng = np.random.default_rng(7)
    impl = f'winograd{m}'
    for c, k in ((5, 6), (64, 48), (3, 130)):
        w = jnp.asarray(rng.standard_normal((3, 3, c, k)) * rng.uniform(0.01, 3), jnp.float32)
        ru, rub = jax.jit(lambda v: prepare(v, impl))(w)
        with monkeypatch.context() as mp:   # a concrete kernel never reaches XLA's transform
            mp.setattr(winograd, 'kernel_transform', lambda *a: pytest.fail('traced path taken'))
            u, ub = prepare(w, impl)
        assert all(isinstance(v, jax.Array) for v in u + ub)
        for got, want in zip(u + ub, ru + rub):
            assert got.dtype == want.dtype == jnp.float32 and got.shape == want.shape
            np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))


@pytest.mark.parametrize('m', [2, 4])
def test_prepared_kernel_read_in_place_by_the_products(m):
    """Each Winograd product's dot reads its kernel matrix straight from the step's parameters, forward
    and input gradient alike: no slice (a copy, on XLA:CPU) of a stacked kernel in the compiled program,
    which cost as much as the products at 512 channels (docs/performance.md)."""
    x, w = jnp.zeros((2, 8, 8, 4)), jnp.zeros((3, 3, 4, 5))
    impl = f'winograd{m}'

    def fwd_and_grad(x, k):
        y, pull = jax.vjp(lambda a: conv3x3_prepared(a, k, impl), x)
        return y, pull(y)[0]
    text = jax.jit(fwd_and_grad, compiler_options=tuning.compiler_options()).lower(x, prepare(w, impl)).compile().as_text()
    entry = text[text.index('ENTRY'):]
    params = set(re.findall(r'(%\S+) = \S+ parameter\(', entry))
    rhs = re.findall(r' dot\(%\S+, (%[^,)\s]+)', entry)
    assert len(rhs) == 2 * (m + 2) ** 2   # the forward's products and the input gradient's
    assert set(rhs) <= params, sorted(set(rhs) - params)


def test_prepared_params_same_activations():
    """A Winograd VGG's ``prepare`` replaces its Winograd kernels by their transforms, nothing else; the
    module computes the same activations from either form."""
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3)) * 50
    params = TinyVGG('block2_conv1').init(jax.random.key(1), x)['params']
    plan = (('block1_conv2', 'winograd2'), ('block2_conv1', 'winograd4'))
    prepared = prepare_params(plan)(params)
    assert set(prepared['block1_conv2']) == {'u', 'ub', 'bias'} and len(prepared['block2_conv1']['u']) == 36
    assert prepared['block1_conv1'] is params['block1_conv1']
    tuned = TinyVGG('block2_conv1', conv=plan)
    a = jax.jit(tuned.apply)({'params': params}, x)['block2_conv1']
    b = jax.jit(tuned.apply)({'params': prepared}, x)['block2_conv1']
    assert rel_err(b, np.asarray(a, np.float64)) < 1e-5


@pytest.mark.parametrize('layer, size, layers', [('block1_conv2', 20, 2), ('block3_conv1', 32, 5)])
def test_engine_prepares_the_kernels_once(tiny_params, monkeypatch, layer, size, layers):
    """The step gets the prepared params: the kernels are transformed outside it, once per Winograd
    layer, and the step's convolutions run on the transforms (block3_conv1: the staged step, its stem's
    four layers and the rest's one)."""
    engine._compiled.cache_clear()  # an equal configuration compiled earlier would not trace again
    calls = []
    monkeypatch.setattr(vgg, 'prepare', lambda w, impl: calls.append('prepare') or prepare(w, impl))
    monkeypatch.setattr(vgg_layers, 'conv3x3', lambda *a: calls.append('raw') or conv3x3(*a))
    monkeypatch.setattr(vgg_layers, 'conv3x3_prepared', lambda *a: calls.append('prepared') or conv3x3_prepared(*a))
    model = get_model('tiny', conv='winograd2')
    assert (staged.cut_point(model, layer, preset('seed'), size, 8) is None) == (layer == 'block1_conv2')
    visualize_filters(tiny_params, layer, [0, 1], preset('seed', steps=3), model=model, size=size,
                      key=jax.random.key(0))
    engine._compiled.cache_clear()
    assert calls.count('prepare') == layers and 'raw' not in calls
    assert calls.count('prepared') >= layers


def test_conv3x3_dispatch_rejects_unknown():
    x = jnp.ones((1, 4, 4, 2))
    w = jnp.ones((3, 3, 2, 2))
    np.testing.assert_array_equal(conv3x3(x, w, 'direct'), conv3x3_direct(x, w))
    with pytest.raises(ValueError, match='winograd4'):
        conv3x3(x, w, 'fft')


def test_vgg_module_with_plan_matches_direct():
    """Same params, same activations (to rounding) whichever algorithm each conv uses."""
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3)) * 50
    direct = TinyVGG('block2_conv1')
    params = direct.init(jax.random.key(1), x)['params']
    plan = (('block1_conv2', 'winograd2'), ('block2_conv1', 'winograd4'))
    tuned = TinyVGG('block2_conv1', conv=plan)
    shapes = jax.eval_shape(tuned.init, jax.random.key(1), x)['params']
    assert jax.tree_util.tree_map(lambda a: a.shape, shapes) == jax.tree_util.tree_map(jnp.shape, params)
    a = jax.jit(direct.apply)({'params': params}, x)['block2_conv1']
    b = jax.jit(tuned.apply)({'params': params}, x)['block2_conv1']
    assert rel_err(b, np.asarray(a, np.float64)) < 1e-4


def plan_of(upto, size, batch, mode, dtype='float32', backend='cpu'):
    return tuning_plan.conv_plan(_convs(VGG16_BLOCKS, size, upto), batch, mode, dtype, backend=backend)


def test_conv_plan_static_rule_on_cpu_vgg16():
    # no kernel to time (or JAXVIS_TUNE=0): the static rule
    plan = dict(plan_of('block5_conv1', 128, 16, 'auto'))
    # 64-channel inputs stay direct; 8x8 at batch 16 has too few tiles for either Winograd.
    assert plan == {'block2_conv2': 'winograd4', 'block3_conv1': 'winograd4', 'block3_conv2': 'winograd4',
                    'block3_conv3': 'winograd4', 'block4_conv1': 'winograd2', 'block4_conv2': 'winograd2',
                    'block4_conv3': 'winograd2'}
    big = dict(plan_of('block5_conv1', 128, 32, 'auto'))
    assert big['block4_conv1'] == 'winograd4' and 'block5_conv1' not in big
    assert plan_of('block1_conv2', 128, 32, 'auto') == ()
    # one image per call: only block2_conv2 (64x64, 128 channels in) has the 1024 tiles F2 needs
    assert plan_of('block3_conv1', 128, 1, 'auto') == (('block2_conv2', 'winograd2'),)


def test_conv_plan_modes():
    assert plan_of('block5_conv1', 128, 16, 'auto', backend='gpu') == ()
    assert plan_of('block5_conv1', 128, 16, 'auto', 'bfloat16') == ()
    assert plan_of('block5_conv1', 128, 16, 'direct') == ()
    forced = plan_of('block2_conv1', 128, 1, 'winograd2', backend='gpu')
    assert forced == (('block1_conv1', 'winograd2'), ('block1_conv2', 'winograd2'), ('block2_conv1', 'winograd2'))
    with pytest.raises(ValueError):
        plan_of('block5_conv1', 128, 16, 'fft')


def test_compiler_options(monkeypatch):
    monkeypatch.delenv('JAXVIS_XLA_DEFAULTS', raising=False)
    assert tuning.compiler_options('gpu') is None
    opts = tuning.compiler_options('cpu')
    if not tuning._cpu_options_work():  # a jaxlib without the option: XLA's defaults, never a failing compile
        assert opts is None
        return
    assert opts == {'xla_cpu_experimental_ynn_fusion_type': ''}
    # the options compile and do not change what a program computes
    f = jax.jit(lambda x: jnp.sum(x * 2), compiler_options=opts)
    assert float(f(jnp.arange(4.0))) == 12.0
    # bf16 steps keep YNNPACK's dots (bf16 dots with fp32 results: the AMX path), nothing else of it;
    # a jaxlib refusing that value gets float32's options (Eigen's convolutions), never a failing compile
    assert tuning.compiler_options('cpu', 'bfloat16') == (
        {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'}
        if tuning._cpu_options_work('bfloat16') else opts)
    monkeypatch.setenv('JAXVIS_XLA_DEFAULTS', '1')
    assert tuning.compiler_options('cpu') is None and tuning.compiler_options('cpu', 'bfloat16') is None


def test_model_rejects_unknown_conv():
    with pytest.raises(JaxvisError, match='conv'):
        get_model('vgg16', conv='fft')


def test_engine_winograd_close_to_direct(tiny_params):
    kw = dict(size=32, key=jax.random.key(3))
    cfg = preset('seed', steps=4)
    a = visualize_filters(tiny_params, 'block1_conv2', [0, 1, 2], cfg, model=get_model('tiny', conv='direct'), **kw)
    b = visualize_filters(tiny_params, 'block1_conv2', [0, 1, 2], cfg, model=get_model('tiny', conv='winograd4'), **kw)
    np.testing.assert_allclose(b.history, a.history, rtol=1e-3, atol=1e-4)
    assert np.max(np.abs(b.images - a.images)) < 0.05  # on 0..255 pixels
    again = visualize_filters(tiny_params, 'block1_conv2', [0, 1, 2], cfg, model=get_model('tiny', conv='winograd4'),
                              **kw)
    np.testing.assert_array_equal(again.images, b.images)  # same call, same bytes


@pytest.mark.parametrize('m', [2, 4])
def test_prepared_matrices_do_not_share_the_kernels_memory(m):
    """A prepared kernel keeps its values when the caller's numpy kernel changes afterwards (a
    single-term transform is a view of the kernel, which device_put may keep instead of copying)."""
    for trial in range(20):
        w = np.random.RandomState(trial).randn(3, 3, 16 + trial, 8).astype(np.float32)
        u, ub = winograd.prepare(w, f'winograd{m}')
        before = [np.array(v) for v in u + ub]
        w[...] = 7.0
        for v, b in zip(u + ub, before):
            np.testing.assert_array_equal(np.asarray(v), b)
