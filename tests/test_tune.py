"""The convolution plan measured on the machine (jaxvis.backend.tune), with a fake timer; kept on disk
by jaxvis.edge.tuning; re-measured and printed by ``jaxvis tune``."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.backend import conv_plan as plan_mod
from jaxvis.backend import onednn, tune
from jaxvis.cli import main
from jaxvis.edge import tuning
from jaxvis.models.vgg import VGG16_BLOCKS, _convs
from jaxvis.models.winograd import KERNEL, conv3x3, conv3x3_direct


@pytest.fixture(autouse=True)
def fresh_table(monkeypatch, tmp_path):
    monkeypatch.setenv('JAXVIS_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('JAXVIS_TUNE', '1')
    monkeypatch.setattr(tune, 'RUN_IMAGES', 1)  # one call per timed run: the fake durations are per call
    monkeypatch.setattr(onednn, 'available', lambda dtype='float32': False)  # the tuner's rules with XLA's own candidates
    tune.clear()
    yield
    tune.clear()


def fake_timer(durations):
    """A clock that makes the i-th timed run last ``durations[i]`` seconds (start and end reads)."""
    reads, now = [], 0.0
    for d in durations:
        reads += [now, now + d]
        now += d + 1.0
    it = iter(reads)
    return lambda: next(it)


def cheap(x, w, impl):
    """A stand-in kernel (the timer is fake, so what runs only has to compile fast): ``[N,H,W,K]``."""
    return x[..., :w.shape[-1]] * w[0, 0, 0]


def timings_for(direct, w2, w4):
    return [direct] * tune.REPEATS + [w2] * tune.REPEATS + [w4] * tune.REPEATS


def test_time_impl_runs_the_kernel_and_takes_the_median():
    k = tune.Key(side=4, c_in=64, c_out=8, batch=1)
    assert tune.time_impl(conv3x3, 'winograd2', k, fake_timer([0.3, 0.1, 0.2])) == pytest.approx(0.2)


def test_a_timed_run_covers_eight_images(monkeypatch):
    """One-image convolutions are timed over 8 calls per run, and the time is per call."""
    monkeypatch.setattr(tune, 'RUN_IMAGES', 8)
    kern = tune.Kernel(cheap, lambda w, impl: w)
    k = tune.Key(side=4, c_in=64, c_out=8, batch=1)
    assert tune.calls_per_run(k) == 8 and tune.calls_per_run(k._replace(batch=16)) == 1
    assert tune.time_impl(kern, 'direct', k, fake_timer([0.8, 0.4, 1.6])) == pytest.approx(0.1)


def test_the_timed_step_keeps_the_forward_and_prepares_outside():
    """What is timed is the step's work, forward and input gradient; the kernel is prepared before."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((2, 6, 6, 5)), jnp.float32)
    want_y, pull = jax.vjp(lambda a: conv3x3_direct(a, w), x)
    for impl in tune.impls('float32'):
        y, dx = tune.timed_step(KERNEL, impl)(x, KERNEL.prepare(w, impl), ct)
        np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(dx, pull(ct)[0], rtol=1e-4, atol=1e-3)
    seen = []
    kern = tune.Kernel(cheap, lambda w, impl: seen.append(impl) or w * 2)
    tune.time_impl(kern, 'winograd4', tune.Key(side=4, c_in=64, c_out=8, batch=1), fake_timer([0.1] * 3))
    assert seen == ['winograd4']  # prepared once, before the timed runs


def test_measured_choice_with_margin_and_cache():
    # F4 wins clearly, F2 a little
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct', timer=fake_timer(timings_for(1.0, 0.97, 0.5))) \
        == 'winograd4'
    assert tune.table()['timings']['4,64,8,1'] == pytest.approx({'direct': 1.0, 'winograd2': 0.97, 'winograd4': 0.5})
    # a second ask reads the table: a timer that would fail if read proves nothing is measured
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct', timer=fake_timer([])) == 'winograd4'
    # winning by less than MARGIN is not enough: a direct convolution is XLA's own
    assert tune.choose({'direct': 1.0, 'winograd2': 1.0 / tune.MARGIN * 1.01, 'winograd4': 2.0}) == 'direct'
    assert tune.choose({'direct': 1.0, 'winograd2': 0.5, 'winograd4': 0.6}) == 'winograd2'
    # the batch is part of the key: batch 2 is measured anew
    assert tune.best_impl(cheap, 4, 64, 8, 2, lambda: 'direct', timer=fake_timer(timings_for(1.0, 2.0, 3.0))) \
        == 'direct'
    assert set(tune.table()['timings']) == {'4,64,8,1', '4,64,8,2'}


def test_measuring_off_uses_the_default_and_few_channels_stay_direct(monkeypatch):
    monkeypatch.setenv('JAXVIS_TUNE', '0')
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'winograd2', timer=fake_timer([])) == 'winograd2'
    assert tune.table()['timings'] == {}
    monkeypatch.setenv('JAXVIS_TUNE', '1')
    assert tune.best_impl(cheap, 4, 3, 8, 1, lambda: 'winograd2', timer=fake_timer([])) == 'direct'


def test_a_row_kept_without_an_implementation_available_now_is_measured_again(monkeypatch):
    """A table measured before oneDNN was installed lacks its column: with measuring on, the row is timed
    again with every candidate; with measuring off, the kept row is used as it is."""
    tune._TABLE['4,64,8,1'] = {'direct': 1.0, 'winograd2': 0.5, 'winograd4': 0.9}   # kept without oneDNN
    monkeypatch.setattr(onednn, 'available', lambda dtype='float32': True)
    monkeypatch.setattr(tune, 'time_impl', lambda conv, impl, k, timer=None:
                        {'direct': 1.0, 'winograd2': 0.6, 'winograd4': 0.9, 'onednn': 0.2}[impl])
    monkeypatch.setenv('JAXVIS_TUNE', '0')
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct') == 'winograd2'
    assert 'onednn' not in tune.table()['timings']['4,64,8,1']
    monkeypatch.setenv('JAXVIS_TUNE', '1')
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct') == 'onednn'
    assert tune.table()['timings']['4,64,8,1'] == {'direct': 1.0, 'winograd2': 0.6, 'winograd4': 0.9, 'onednn': 0.2}


def test_the_plan_follows_the_table():
    convs = _convs(VGG16_BLOCKS, 32, 'block3_conv1')  # block1_conv2 is the first with 64 input channels
    for name, side, c_in, c_out in convs:
        if c_in >= tune.MIN_CHANNELS:
            tune._TABLE[f'{side},{c_in},{c_out},8'] = ({'direct': 1.0, 'winograd2': 0.9, 'winograd4': 0.1}
                                                       if name == 'block2_conv2' else
                                                       {'direct': 1.0, 'winograd2': 0.5, 'winograd4': 0.9})
    plan = plan_mod.conv_plan(convs, 8, 'auto', kernel=cheap, backend='cpu')
    assert plan == (('block1_conv2', 'winograd2'), ('block2_conv1', 'winograd2'), ('block2_conv2', 'winograd4'),
                    ('block3_conv1', 'winograd2'))
    # bf16 has its own rows: none measured yet and measuring off -> every convolution direct, where
    # float32's static rule would run Winograd (128 px to block5_conv1 at batch 16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('JAXVIS_TUNE', '0')
        big = _convs(VGG16_BLOCKS, 128, 'block5_conv1')
        assert plan_mod.conv_plan(big, 16, 'auto', kernel=cheap, backend='cpu') != ()
        assert plan_mod.conv_plan(big, 16, 'auto', 'bfloat16', kernel=cheap, backend='cpu') == ()
    for name, side, c_in, c_out in convs:
        if c_in >= tune.MIN_CHANNELS:
            tune._TABLE[f'{side},{c_in},{c_out},8,bfloat16'] = {'direct': 1.0, 'winograd2': 0.5 if c_in > 64 else 2.0}
    assert plan_mod.conv_plan(convs, 8, 'auto', 'bfloat16', kernel=cheap, backend='cpu') == (
        ('block2_conv2', 'winograd2'), ('block3_conv1', 'winograd2'))
    assert plan_mod.conv_plan(convs, 8, 'auto', 'bfloat16', kernel=cheap, backend='gpu') == ()


def test_bf16_measures_direct_and_f2_only_in_bf16():
    """In bf16 F(4x4) is not a candidate (its bf16 products are off by 7%); the timed step runs in bf16,
    a row of its own beside float32's."""
    seen, asked = [], []

    def conv(x, w, impl):
        seen.append((impl, x.dtype, w.dtype))
        return cheap(x, w, impl)
    real_options = tune.compiler_options
    with pytest.MonkeyPatch.context() as mp:  # the timed step is compiled with bf16's options
        mp.setattr(tune, 'compiler_options', lambda *a, **kw: asked.append(kw.get('dtype')) or real_options(*a, **kw))
        got = tune.best_impl(conv, 4, 64, 8, 1, lambda: 'direct', timer=fake_timer([1.0] * 3 + [0.5] * 3),
                             dtype='bfloat16')
    assert asked == ['bfloat16', 'bfloat16']
    assert got == 'winograd2' and tune.table()['timings'] == {'4,64,8,1,bfloat16': {'direct': 1.0, 'winograd2': 0.5}}
    assert {impl for impl, *_ in seen} == {'direct', 'winograd2'}
    assert {(str(x), str(w)) for _, x, w in seen} == {("bfloat16", "bfloat16")}
    # the float32 row of the same shape is another measurement (all three candidates)
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct', timer=fake_timer(timings_for(1.0, 2.0, 3.0))) \
        == 'direct'
    assert set(tune.table()['timings']) == {'4,64,8,1,bfloat16', '4,64,8,1'}


def test_table_kept_on_disk_per_machine(monkeypatch):
    assert not tuning.use_disk_cache()  # nothing there yet; from now on measurements are kept
    tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct', timer=fake_timer(timings_for(1.0, 0.5, 0.9)))
    data = json.loads(tuning.path().read_text())
    assert data['machine'] == tune.machine_id() and '4,64,8,1' in data['timings']
    tune.clear()
    assert tuning.use_disk_cache()  # the next process reads it and measures nothing
    assert tune.best_impl(cheap, 4, 64, 8, 1, lambda: 'direct', timer=fake_timer([])) == 'winograd2'
    tune.clear()
    monkeypatch.setattr(tune, 'machine_id', lambda: 'another CPU | 2 cpus | jax 0')
    assert not tuning.use_disk_cache()  # another machine's table is not taken
    assert tune.table()['timings'] == {}
    monkeypatch.setattr(tune, 'machine_id', lambda: data['machine'])
    old = dict(data, form=1)  # timings of another form (the input gradient alone) are not taken either
    assert not tune.load(old) and not tune.load({k: v for k, v in data.items() if k != 'form'})
    assert tune.load(data) and tune.table()['timings']


def test_tune_command_prints_and_keeps_the_table(monkeypatch, capsys):
    fake = {'direct': 2.0, 'winograd2': 1.0, 'winograd4': 1.5}
    monkeypatch.setattr(tune, 'time_impl', lambda conv, impl, k, timer=None: fake[impl] * k.c_in / 64)
    assert main(['tune', '--size', '32', '--layer', 'block3_conv1']) == 0
    out = capsys.readouterr().out
    assert '| block1_conv1 | 32 | 3 -> 64 | - | - | - | direct |' in out
    assert '| block2_conv1 | 16 | 64 -> 128 | 2000.0 (x1.00) | 1000.0 (x2.00) | 1500.0 (x1.33) | winograd2 |' in out
    assert json.loads(tuning.path().read_text())['timings']['8,128,256,8'] == {
        'direct': 4.0, 'winograd2': 2.0, 'winograd4': 3.0}
    assert main(['tune', '--size', '32', '--layer', 'block2_conv1', '--width', '4']) == 0  # filters --width 4's plan
    assert 'batch 4 per call' in capsys.readouterr().out
    kept = json.loads(tuning.path().read_text())['timings']
    assert '16,64,128,4' in kept and '8,128,256,8' in kept  # the width-8 plan is not forgotten
    # bf16: its own rows, direct against F2 only, and no stem line (a bf16 step is one program)
    assert main(['tune', '--size', '32', '--layer', 'block3_conv1', '--dtype', 'bfloat16']) == 0
    out = capsys.readouterr().out
    assert '| layer | side | in -> out | direct | winograd2 | auto picks |' in out and 'stem' not in out
    assert '| block2_conv1 | 16 | 64 -> 128 | 2000.0 (x1.00) | 1000.0 (x2.00) | winograd2 |' in out
    kept = json.loads(tuning.path().read_text())['timings']
    assert kept['8,128,256,8,bfloat16'] == {'direct': 4.0, 'winograd2': 2.0} and '8,128,256,8' in kept
    assert main(['tune', '--layer', 'pool9']) == 2
    assert 'pool9' in capsys.readouterr().err
    assert main(['tune', '--width', '0']) == 2
    assert 'width' in capsys.readouterr().err
