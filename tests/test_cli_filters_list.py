"""`jaxvis filters` for seed 004's workflow on the tiny model: a list of layers, ``random:K`` filters,
``--format jpg``, and its bad inputs."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxvis.cli import main
from jaxvis.visualize.start import draw_filters

LAYERS = 'block1_conv1,block3_conv1'   # 4 and 8 filters on the tiny model


@pytest.fixture
def tiny_cli(monkeypatch, tiny_h5):
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    return tiny_h5


def run(tmp_path, *extra, out='out'):
    return main(['filters', '--model', 'tiny', '--size', '16', '--steps', '12', '--quiet', '--preset', 'keras-vis',
                 '--out', str(tmp_path / out), *extra])


def test_layer_list_random_filters_jpg(tiny_cli, tmp_path):
    assert run(tmp_path, '--layer', LAYERS, '--filters', 'random:3', '--format', 'jpg', '--seed', '5') == 0
    out = tmp_path / 'out'
    m = json.loads((out / 'manifest.json').read_text())
    assert list(m['layers']) == LAYERS.split(',') and m['preset'] == 'keras-vis' and m['normalize'] == 'centred'
    for layer, n in (('block1_conv1', 4), ('block3_conv1', 8)):
        drawn = [e['filter'] for e in m['layers'][layer]['filters']]
        assert len(set(drawn)) == 3 and all(0 <= f < n for f in drawn)
        # the same draw as jax.random from the seed's key and the layer name, independent of the CLI
        assert drawn == draw_filters(jax.random.key(5), layer, n, 3).tolist()
        for e in m['layers'][layer]['filters']:
            assert e['file'] == f'{layer}_{e["filter"]}.jpg'
            with Image.open(out / e['file']) as im:
                assert im.format == 'JPEG' and im.size == (16, 16) and im.mode == 'RGB'
                assert np.asarray(im).std() > 0
        assert not list(out.glob(f'{layer}_*[0-9].png'))          # no per-filter PNGs
        assert Image.open(out / f'{layer}_grid.png').format == 'PNG'  # the grid stays PNG


def test_random_draw_reproducible_distinct_and_seeded():
    key = jax.random.key(0)
    a = draw_filters(key, 'block5_conv2', 512, 6)
    np.testing.assert_array_equal(a, draw_filters(jax.random.key(0), 'block5_conv2', 512, 6))
    assert len(set(a.tolist())) == 6 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, draw_filters(jax.random.key(1), 'block5_conv2', 512, 6))
    assert not np.array_equal(a, draw_filters(key, 'block5_conv1', 512, 6))
    np.testing.assert_array_equal(draw_filters(key, 'x', 4, 4), np.arange(4))   # all of them


def test_resume_with_another_format_is_refused(tiny_cli, tmp_path, capsys):
    assert run(tmp_path, '--layer', 'block1_conv1', '--filters', '0:2') == 0
    capsys.readouterr()
    assert run(tmp_path, '--layer', 'block1_conv1', '--filters', '0:2', '--format', 'jpg') == 2
    err = capsys.readouterr().err
    assert 'differs in: format' in err and err.count('\n') == 1


@pytest.mark.parametrize('args, says', [
    (['--layer', 'block1_conv1', '--filters', 'random:0'], 'cannot draw 0 distinct filters from block1_conv1'),
    (['--layer', LAYERS, '--filters', 'random:999'], 'cannot draw 999 distinct filters from block1_conv1'),
    (['--layer', 'block1_conv1', '--filters', 'random:x'], 'bad --filters'),
    (['--layer', 'block1_conv1,block9_conv1', '--filters', 'random:2'], "unknown layer 'block9_conv1'"),
    (['--layer', 'block1_conv1,block1_conv1'], 'give each layer once'),
    (['--layer', 'block1_conv1,'], 'give each layer once'),
])
def test_bad_input_one_line_exit_2_nothing_written(tiny_cli, tmp_path, capsys, args, says):
    assert run(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert says in err and err.count('\n') == 1
    assert not (tmp_path / 'out').exists()
