"""oneDNN's convolutions in a jitted step (jaxvis.backend.onednn, .xla_ffi, jaxvis.models.onednn_conv):
against a plain numpy convolution, the same bytes whatever the batch, vmap, errors, the plan."""
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.backend import conv_plan as plan_mod
from jaxvis.backend import onednn, tune, xla_ffi
from jaxvis.models import get_model, onednn_conv
from jaxvis.models.winograd import KERNEL, conv3x3, conv3x3_direct
from jaxvis.visualize import preset, visualize_filters

from test_winograd import numpy_conv, rel_err

LINUX_X86 = sys.platform.startswith('linux') and platform.machine() == 'x86_64'
needs = pytest.mark.skipif(not onednn.available(), reason='oneDNN did not load')
needs_bf16 = pytest.mark.skipif(not onednn.available('bfloat16'), reason='no oneDNN bf16 convolution on this CPU')
BF16 = pytest.param('bfloat16', marks=needs_bf16)


def _cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX in /proc/cpuinfo, and oneDNN not capped below them (ONEDNN_MAX_CPU_ISA)."""
    try:
        flags = open('/proc/cpuinfo').read()
    except OSError:
        return False
    isa = os.environ.get('ONEDNN_MAX_CPU_ISA', '').upper()
    return (' avx512_bf16' in flags or ' amx_bf16' in flags) and isa in ('', 'ALL', 'AVX512_CORE_BF16',
                                                                            'AVX512_CORE_FP16', 'AVX512_CORE_AMX',
                                                                            'AVX10_1_512_AMX')


@pytest.fixture(autouse=True)
def fresh_table():
    tune.clear()
    yield
    tune.clear()


def test_loads_where_the_project_installs_it():
    """pyproject installs onednn-cpu-gomp on Linux x86_64: there it must load (no silent skip in CI)."""
    if LINUX_X86:
        assert onednn.available()
        assert 'onednn' in tune.impls('float32')
        # bf16 where the CPU has it (Zen 4, Sapphire Rapids); an AVX2-only CPU keeps XLA's bf16 convolutions
        assert ('onednn' in tune.impls('bfloat16')) == _cpu_has_bf16()


def _case(n, h, w, c, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kern = (rng.standard_normal((3, 3, c, k)) * (2 / (9 * c)) ** .5).astype(np.float32)
    ct = rng.standard_normal((n, h, w, k)).astype(np.float32)
    return x, kern, ct


def _fwd_and_grad(x, kern, ct, dtype):
    prepared = onednn_conv.prepare(jnp.asarray(kern, dtype))

    def step(a, ct):
        y, pull = jax.vjp(lambda b: onednn_conv.conv3x3_onednn(b, *prepared), a)
        return y, pull(ct)[0]
    y, dx = jax.jit(step)(jnp.asarray(x, dtype), jnp.asarray(ct, dtype))
    return np.asarray(y, np.float32), np.asarray(dx, np.float32)


@needs
@pytest.mark.parametrize('dtype,tol', [('float32', 1e-5), pytest.param('bfloat16', 2e-2, marks=needs_bf16)])
@pytest.mark.parametrize('shape', [(2, 8, 8, 16, 24), (1, 5, 7, 3, 4), (3, 1, 1, 8, 8), (1, 8, 8, 256, 256)])
def test_forward_and_input_gradient_match_numpy(shape, dtype, tol):
    x, kern, ct = _case(*shape)
    y, dx = _fwd_and_grad(x, kern, ct, dtype)
    assert y.shape == shape[:3] + (shape[4],) and dx.shape == x.shape
    assert rel_err(y, numpy_conv(x, kern)) < tol
    # the input gradient of a convolution is the convolution of the cotangent with the flipped kernel
    assert rel_err(dx, numpy_conv(ct, np.flip(kern, (0, 1)).swapaxes(2, 3))) < tol


@needs_bf16
def test_a_kernel_prepared_at_another_shape_is_reordered():
    """prepare() writes the layout oneDNN picks at PLAN_SHAPE; where it picks another (bf16 256 -> 256 at
    one 8x8 image, found by looking), the kernel is reordered in the call and the result stays right."""
    dt = onednn._dtype_code(jnp.bfloat16)
    here, planned = onednn._conv(1, 8, 8, 256, 256, dt), onednn._plan(256, 256, dt)
    if onednn._lib().dll.dnnl_memory_desc_equal(here.steps['forward'].weights, planned.steps['forward'].weights):
        pytest.skip('this oneDNN build picks one layout for both shapes: nothing to reorder')
    x, kern, ct = _case(1, 8, 8, 256, 256)
    y, dx = _fwd_and_grad(x, kern, ct, 'bfloat16')
    assert rel_err(y, numpy_conv(x, kern)) < 2e-2


@needs
@pytest.mark.parametrize('dtype', ['float32', BF16])
def test_an_image_is_the_same_bytes_alone_or_in_a_batch(dtype):
    x, kern, ct = _case(8, 16, 16, 64, 64, seed=3)
    y8, dx8 = _fwd_and_grad(x, kern, ct, dtype)
    y1, dx1 = _fwd_and_grad(x[5:6], kern, ct[5:6], dtype)
    y2, dx2 = _fwd_and_grad(x[4:6], kern, ct[4:6], dtype)
    np.testing.assert_array_equal(y1[0], y8[5])
    np.testing.assert_array_equal(dx1[0], dx8[5])
    np.testing.assert_array_equal(y2, y8[4:6])
    np.testing.assert_array_equal(dx2, dx8[4:6])


@needs
def test_vmap_folds_images_and_loops_over_kernels():
    x, kern, _ = _case(6, 6, 6, 8, 5, seed=4)
    k1 = onednn_conv.prepare(jnp.asarray(kern))
    got = jax.jit(jax.vmap(lambda a: onednn_conv.conv3x3_onednn(a, *k1)))(x.reshape(3, 2, 6, 6, 8))
    np.testing.assert_allclose(np.asarray(got).reshape(6, 6, 6, 5), conv3x3_direct(x, kern), rtol=1e-5, atol=1e-5)
    kerns = np.stack([kern, -2 * kern])   # a batch of kernels: one call per kernel
    ks = jax.vmap(onednn_conv.prepare)(jnp.asarray(kerns))
    got = jax.jit(jax.vmap(onednn_conv.conv3x3_onednn, in_axes=(None, 0, 0)))(x, *ks)
    for i in range(2):
        np.testing.assert_allclose(got[i], conv3x3_direct(x, kerns[i]), rtol=1e-5, atol=1e-5)


@needs
def test_a_kernel_of_another_dtype_or_shape_is_refused_and_only_the_image_is_differentiated():
    x, kern, _ = _case(1, 4, 4, 8, 8)
    k32 = onednn_conv.prepare(jnp.asarray(kern))
    with pytest.raises(ValueError, match='another convolution' if onednn.available('bfloat16') else 'no bfloat16'):
        onednn_conv.conv3x3_onednn(jnp.asarray(x, jnp.bfloat16), *k32)   # fp32 layouts for a bf16 image
    with pytest.raises(ValueError, match='another convolution'):
        onednn_conv.conv3x3_onednn(jnp.asarray(x[..., :4]), *k32)
    with pytest.raises(Exception, match='(?i)callback'):   # no kernel gradient: prepare has no derivative
        jax.grad(lambda w: jnp.sum(conv3x3(jnp.asarray(x), w, 'onednn')))(jnp.asarray(kern))
    g = jax.grad(lambda a: jnp.sum(conv3x3(a, jnp.asarray(kern), 'onednn') ** 2))(jnp.asarray(x))
    want = jax.grad(lambda a: jnp.sum(conv3x3_direct(a, kern) ** 2))(jnp.asarray(x))
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-4)   # the image's gradient, unprepared


CROSS_THREAD = """
import sys, threading, numpy as np
from jaxvis.backend import onednn
rng = np.random.default_rng(0)
g = rng.standard_normal((2, 16, 16, 64)).astype(np.float32)
kern = (rng.standard_normal((3, 3, 64, 64)) * 0.05).astype(np.float32)
wf, wb = onednn.prepare(kern)                       # primitives created on this thread
print(*onednn.implementation(2, 16, 16, 64, 64, 'float32'))
here = onednn.run('backward_data', g, wb, np.empty_like(g))
got = {}
t = threading.Thread(target=lambda: got.update(dx=onednn.run('backward_data', g, wb, np.empty_like(g))))
t.start(); t.join()
assert np.array_equal(got['dx'], here)
print('same')
"""


@needs
@pytest.mark.parametrize('isa', ['SSE41', ''])
def test_a_primitive_made_on_one_thread_runs_on_another(isa):
    """XLA runs the convolutions on its own threads. oneDNN's library-managed scratchpad belongs to the
    thread that created the primitive: SSE4.1's backward convolution (gemm:jit, which needs scratch
    memory) then failed on another thread. User scratchpad: the same bytes on either thread."""
    import os
    import subprocess
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa)
    r = subprocess.run([sys.executable, '-c', CROSS_THREAD], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split()[-1] == 'same', r.stdout + r.stderr[-2000:]
    if isa == 'SSE41':
        assert 'gemm' in r.stdout   # the implementation that needs scratch memory was the one run


def test_a_handler_interrupted_is_an_xla_error_not_unwritten_results(monkeypatch):
    """Ctrl-C inside a handler: the results were not written, so XLA must fail the call (a return would
    read as success), and the interrupt is passed on to the main thread."""
    passed_on = []
    monkeypatch.setattr(xla_ffi._thread, 'interrupt_main', lambda: passed_on.append(True))

    def handler(args, rets):
        raise KeyboardInterrupt
    xla_ffi.register('jaxvis_test_interrupted', handler)
    call = jax.ffi.ffi_call('jaxvis_test_interrupted', jax.ShapeDtypeStruct((3,), jnp.float32))
    with pytest.raises(Exception, match='KeyboardInterrupt'):
        jax.block_until_ready(jax.jit(call)(jnp.arange(3.0)))
    assert passed_on


def test_an_exception_in_a_handler_is_an_xla_error_with_its_message():
    def handler(args, rets):
        (a,), (out,) = args, rets
        if a[0] < 0:
            raise ValueError('negative first element')
        out[...] = 2 * a
    xla_ffi.register('jaxvis_test_double', handler)
    call = jax.ffi.ffi_call('jaxvis_test_double', jax.ShapeDtypeStruct((3,), jnp.float32))
    np.testing.assert_array_equal(jax.jit(call)(jnp.arange(3.0)), [0, 2, 4])
    with pytest.raises(Exception, match='negative first element'):
        jax.block_until_ready(jax.jit(call)(jnp.asarray([-1.0, 0, 0])))


@needs
def test_timed_and_planned_like_the_others():
    x, kern, ct = _case(2, 6, 6, 64, 8)
    y, dx = tune.timed_step(KERNEL, 'onednn')(jnp.asarray(x), KERNEL.prepare(jnp.asarray(kern), 'onednn'),
                                              jnp.asarray(ct))
    want, pull = jax.vjp(lambda a: conv3x3_direct(a, kern), x)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, pull(ct)[0], rtol=1e-5, atol=1e-4)
    convs = (('a', 16, 64, 64), ('b', 8, 64, 128))
    tune._TABLE['16,64,64,8'] = {'direct': 1.0, 'winograd2': 0.9, 'winograd4': 0.9, 'onednn': 0.5}
    tune._TABLE['8,64,128,8'] = {'direct': 1.0, 'winograd2': 0.5, 'winograd4': 0.9, 'onednn': 0.6}
    assert plan_mod.conv_plan(convs, 8, 'auto', kernel=KERNEL, backend='cpu') == (('a', 'onednn'), ('b', 'winograd2'))
    assert tune.load(tune.table())   # a table with oneDNN's rows is kept and read back


def test_forcing_onednn_where_it_did_not_load_says_so(monkeypatch):
    monkeypatch.setattr(onednn, 'available', lambda dtype='float32': False)
    assert 'onednn' not in tune.impls('float32')
    with pytest.raises(ValueError, match='needs oneDNN'):
        plan_mod.conv_plan((('a', 16, 64, 64),), 8, 'onednn', backend='cpu')
    # a table kept where oneDNN loaded, read where it does not: the fastest of the rest
    tune._TABLE['16,64,64,8'] = {'direct': 1.0, 'winograd2': 0.9, 'winograd4': 0.7, 'onednn': 0.1}
    assert tune.best_impl(KERNEL, 16, 64, 64, 8, lambda: 'direct') == 'winograd4'
    assert onednn._has('float32') in (True, False)   # the per-dtype probe answers without raising


def test_forcing_onednn_in_a_dtype_it_lacks_here_says_which(monkeypatch):
    """An AVX2-only CPU: oneDNN loads, with no bf16 convolution. The plan says so, not 'did not load'."""
    monkeypatch.setattr(onednn, 'available', lambda dtype='float32': dtype == 'float32')
    assert 'onednn' in tune.impls('float32') and 'onednn' not in tune.impls('bfloat16')
    with pytest.raises(ValueError, match='no bfloat16 convolution on this CPU'):
        plan_mod.conv_plan((('a', 16, 64, 64),), 8, 'onednn', backend='cpu', dtype='bfloat16')
    assert plan_mod.conv_plan((('a', 16, 64, 64),), 8, 'onednn', backend='cpu') == (('a', 'onednn'),)


@needs
@pytest.mark.parametrize('dtype', ['float32', BF16])
def test_filters_with_onednn_close_to_direct_and_the_same_bytes_in_any_batch(tiny_params, dtype):
    """The engine with conv='onednn' on every layer: images near the direct convolution's (fp32), and
    a filter's image the same bytes alone, in 2 and in 8 (batch 8 against batch 2)."""
    cfg = preset('seed', steps=4, dtype=dtype)
    kw = dict(size=32, key=jax.random.key(2))
    dnn = get_model('tiny', conv='onednn')
    eight = visualize_filters(tiny_params, 'block3_conv2', range(8), cfg, model=dnn, **kw)
    alone = visualize_filters(tiny_params, 'block3_conv2', [5], cfg, model=dnn, **kw)
    bs2 = visualize_filters(tiny_params, 'block3_conv2', range(8), cfg, model=dnn, batch_size=2, **kw)
    np.testing.assert_array_equal(alone.images[0], eight.images[5])
    np.testing.assert_array_equal(bs2.images, eight.images)
    np.testing.assert_array_equal(bs2.losses, eight.losses)
    if dtype == 'float32':
        direct = visualize_filters(tiny_params, 'block3_conv2', range(8), cfg, model=get_model('tiny', conv='direct'),
                                   **kw)
        np.testing.assert_allclose(eight.losses, direct.losses, rtol=1e-3)
