"""A network jaxvis has never seen (tests/own_model.py: BatchNorm in inference mode, strided convolutions,
residual adds, a global pool, a dense head) through ``from_flax``, a plain function through ``from_fn``,
and the CLI's ``--model module:callable``: every feature, no VGG assumption."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxvis
import own_model
from jaxvis import metrics
from jaxvis.cli import main
from jaxvis.errors import JaxvisError
from jaxvis.models import forward, probe
from jaxvis.models.vgg import deprocess as caffe_deprocess
from jaxvis.visualize.start import filter_keys, start_point

LAYER = 'Residual_1/act'   # stride 4, after two residual blocks


@pytest.fixture(scope='module')
def model():
    return own_model.make()


def test_layers_in_forward_order_with_their_shapes(model):
    names = probe.layer_names(model)
    assert names == ('Conv_0', 'Conv_1', 'Residual_0/Conv_0', 'Residual_0/BatchNorm_0', 'Residual_0/act',
                     'Residual_0', 'Conv_2', 'Residual_1/Conv_0', 'Residual_1/BatchNorm_0', 'Residual_1/act',
                     'Residual_1', 'Dense_0', 'output')
    assert probe.conv_layers(model) == ('Conv_0', 'Conv_1', 'Residual_0/Conv_0', 'Conv_2', 'Residual_1/Conv_0')
    assert probe.spatial(model, 'Conv_1', 32) == (16, 16) and probe.spatial(model, LAYER, 33) == (9, 9)
    assert probe.spatial(model, 'output', 32) is None and probe.channels(model, 'output') == 5
    assert [probe.stride(model, n) for n in ('Conv_0', 'Conv_1', LAYER)] == [1, 2, 4]
    # 3x3 convs: 3 px, then +2 at stride 1, +2*2 at stride 2 ... (the residual paths add nothing wider)
    radii = [probe.receptive_radius(model, n, model.params) for n in ('Conv_1', 'Residual_0/act', LAYER)]
    assert radii == [2, 4, 10]


def test_captures_are_the_module_s_own_values(model):
    """'output' is the module's result; Conv_0 is a plain lax convolution of the input; the BatchNorm
    uses its running statistics (inference mode), written out by hand."""
    x = jax.random.uniform(jax.random.key(0), (2, 20, 20, 3))
    acts = forward(model, None)(model.params, x)
    np.testing.assert_allclose(acts['output'], own_model.SmallNet().apply(model.params, x), rtol=1e-6)
    p = model.params['params']
    conv = jax.lax.conv_general_dilated(x, p['Conv_0']['kernel'], (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + p['Conv_0']['bias']
    np.testing.assert_allclose(acts['Conv_0'], conv, rtol=1e-5, atol=1e-6)
    stats, bn = model.params['batch_stats']['Residual_0']['BatchNorm_0'], p['Residual_0']['BatchNorm_0']
    want = (acts['Residual_0/Conv_0'] - stats['mean']) / jnp.sqrt(stats['var'] + 1e-5) * bn['scale'] + bn['bias']
    np.testing.assert_allclose(acts['Residual_0/BatchNorm_0'], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts['Residual_0/act'], jax.nn.relu(want), rtol=1e-5, atol=1e-5)


def test_nothing_past_the_deepest_layer_is_computed(model):
    x = jnp.zeros((1, 64, 64, 3))
    flops = {}
    for layer in ('Conv_1', LAYER, 'output'):
        f = jax.jit(lambda v, x, layer=layer: forward(model, layer)(v, x)[layer])
        flops[layer] = f.lower(model.params, x).compile().cost_analysis()['flops']
    # Conv_0 and Conv_1 alone: 2 * H * W * 9 * C_in * C_out multiply-adds each, counted as flops
    convs = 2 * 64 * 64 * 9 * 3 * 6 + 2 * 32 * 32 * 9 * 6 * 8
    assert convs <= flops['Conv_1'] < 1.05 * convs
    assert flops['Conv_1'] < flops[LAYER] < flops['output']


@pytest.mark.parametrize('name', ['seed', 'jacobgil', 'yosinski1', 'lucid'])
def test_every_preset_runs_and_the_objective_goes_up(model, name):
    res = jaxvis.visualize_filters(None, LAYER, [0, 3], jaxvis.preset(name, steps=6), model=model, size=32)
    assert res.images.shape == (2, 32, 32, 3) and np.all(np.isfinite(res.images))
    live = ~res.dead
    assert live.any()
    if name != 'jacobgil':  # seed 000's 3:3:1 average shrinks the image ~9% a step: it may lose ground
        assert np.all(res.losses[live] > res.history[0, live])


def test_seed_pixels_mean_the_same_picture_on_any_model(model):
    """The seeds' start is seed 003's noise in VGG's caffe input units; a [0, 1]-input model starts from
    the very RGB image that noise is on VGG (through its own preprocessing), not from values near 128."""
    key = jax.random.key(2)
    cfg = jaxvis.preset('seed', steps=1)
    a = jaxvis.visualize_filters(None, LAYER, [1], cfg, model=model, size=32, key=key, snapshot_every=1)
    q = start_point(cfg, filter_keys(key, LAYER, [1])[0], 32)
    np.testing.assert_allclose(a.snapshots[0, 0], caffe_deprocess(q), atol=1e-3)
    assert 200 < a.snapshots[0].mean() < 256  # bright grey noise, as on VGG


def test_logits_are_a_layer_too(model):
    res = jaxvis.visualize_filters(None, 'output', [2, 4], jaxvis.preset('seed', steps=8), model=model, size=32)
    assert np.all(res.losses > res.history[0]) and np.all(np.diff(res.history, axis=0) > 0)


def test_dream_in_tiles_metrics_and_diverse(model):
    rng = np.random.default_rng(0)
    photo = np.clip(np.asarray(jax.image.resize(rng.uniform(0, 255, (4, 5, 3)), (40, 52, 3), 'cubic')), 0, 255)
    cfg = jaxvis.DreamConfig.make(LAYER, octaves=1, steps=8, step_size=0.05, tile_size=24, tile_margin=12)
    out = jaxvis.deepdream(None, photo, cfg, model=model, key=jax.random.key(1))
    assert out.image.shape == photo.shape and out.history['octaves'] == 1
    # what the ascent maximizes is the objective over random mirror rolls of the image (on this small
    # random net one view's score swings with where the zero-padded border falls): averaged over 32
    # fixed rolls, it goes up
    from jaxvis.image_ops import mirror_roll
    shifts = np.random.default_rng(1).integers(0, 80, (32, 2))
    fwd = jax.jit(lambda x: jnp.mean(forward(model, LAYER)(model.params, x)[LAYER] ** 2, axis=(1, 2, 3)))
    rolled = lambda im: float(jnp.mean(fwd(model.preprocess(jnp.stack([mirror_roll(jnp.asarray(im, jnp.float32),
                                                                                    jnp.asarray(sh)) for sh in shifts])))))
    assert rolled(out.image) > 1.3 * rolled(photo)
    res = jaxvis.visualize_filters(None, LAYER, [0, 1, 2], jaxvis.preset('seed', steps=3), model=model, size=32)
    m = metrics.measure(None, res, LAYER, model=model)
    assert m['activation'].shape == (3,) and np.all(np.isfinite(m['selectivity']))
    div = jaxvis.visualize_diverse(None, LAYER, 1, jaxvis.preset('lucid', steps=4), model=model, size=32, n=2)
    assert div.images.shape == (2, 32, 32, 3)


def test_from_fn_a_plain_function():
    """An Equinox-style model: a function of (params, x) returning named activations."""
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {'w1': jax.random.normal(k1, (3, 3, 3, 4)) * 0.3, 'w2': jax.random.normal(k2, (3, 3, 4, 6)) * 0.3}
    conv = lambda x, w, s: jax.lax.conv_general_dilated(x, w, (s, s), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

    def net(p, x):
        a = jax.nn.relu(conv(x, p['w1'], 1))
        b = jax.nn.relu(conv(a, p['w2'], 2))
        return {'a': a, 'b': b}

    m = jaxvis.from_fn(net, params, preprocess='torch', name='plain')
    assert probe.layer_names(m) == ('a', 'b') and probe.stride(m, 'b') == 2 and probe.channels(m, 'b') == 6
    for name in ('seed', 'lucid'):
        res = jaxvis.visualize_filters(None, 'b', [0, 5], jaxvis.preset(name, steps=5), model=m, size=24)
        assert np.all(res.losses[~res.dead] > res.history[0, ~res.dead]) and (~res.dead).any()
    with pytest.raises(JaxvisError, match='valid layers: a, b'):
        jaxvis.visualize_filters(None, 'c', [0], model=m, size=24)
    with pytest.raises(JaxvisError, match='preprocessing'):
        jaxvis.from_fn(net, params, preprocess='imagenet')


# ---------------------------------------------------------------- the command line

@pytest.fixture
def in_tests(monkeypatch):
    monkeypatch.chdir(os.path.dirname(__file__))


def test_cli_layers_filters_and_dream(in_tests, tmp_path, capsys):
    assert main(['layers', '--model', 'own_model:make', '--size', '32', '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'model smallnet' in out and any(ln.split()[:4] == ['Residual_1/act', 'layer', '8', '8x8']
                                           for ln in out.splitlines())
    o = tmp_path / 'f'
    assert main(['filters', '--model', 'own_model:make', '--layer', 'all', '--filters', '0:2', '--size', '32',
                 '--steps', '3', '--gif', '--quiet', '--out', str(o)]) == 0
    m = json.loads((o / 'manifest.json').read_text())
    assert list(m['layers']) == list(probe.conv_layers(own_model.make()))
    assert m['weights']['source'] == 'callable' and len(m['weights']['sha256']) == 64
    assert Image.open(o / 'Conv_2_1.png').size == (32, 32) and (o / 'Conv_2.gif').exists()
    assert (o / 'Residual_0.Conv_0_1.png').exists()  # a layer path becomes a flat file name
    src = tmp_path / 'in.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(src)
    assert main(['dream', str(src), '--model', 'own_model:make', '--layer', LAYER, '--octaves', '2', '--steps', '2',
                 '--tile-size', '16', '--quiet', '--out', str(tmp_path / 'd.png')]) == 0
    assert Image.open(tmp_path / 'd.png').size == (56, 40)


@pytest.mark.parametrize('spec, says', [
    ('own_model:nothing', "has no 'nothing'"), ('no_such_module:make', "no module 'no_such_module'"),
    ('own_model:SmallNet', 'must return a jaxvis Model'),
])
def test_cli_bad_model_spec_is_one_line(in_tests, capsys, spec, says):
    assert main(['layers', '--model', spec, '--quiet']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and says in err, err


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's "Your own model" code block, executed as it stands."""
    readme = open(os.path.join(os.path.dirname(__file__), '..', 'README.md')).read()
    section = readme[readme.index('## Your own model'):]
    code = section[section.index('```python') + len('```python'):section.index('```\n', section.index('```python'))]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, 'README.md', 'exec'), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "('Conv_0', 'Conv_1', 'BatchNorm_0', 'block', 'Dense_0', 'output')"
    assert out[1] == '(8, 64, 64, 3) (96, 128, 3)'
