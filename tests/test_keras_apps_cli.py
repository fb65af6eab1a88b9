"""ResNet50 / InceptionV3 at the edge: the official files found and fetched by VGG16's rules, one line
offline; `jaxvis layers`, `filters` and `dream --preset keras-io` on synthetic weights in the official layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import jaxvis.edge.weights as W
from jaxvis.cli import main
from jaxvis.cli.dream import add_parser, dream_config
from jaxvis.dream import DreamConfig
from jaxvis.edge.locations import OFFICIAL
from jaxvis.errors import JaxvisError, WeightsError


def test_official_files_as_keras_source_states_them():
    # keras 3.15.1, keras/src/applications/resnet.py (WEIGHTS_HASHES['resnet50'][1]) and inception_v3.py
    base = 'https://storage.googleapis.com/tensorflow/keras-applications/'
    assert OFFICIAL['resnet50'].url == base + 'resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
    assert OFFICIAL['resnet50'].md5 == '4d473c1dd8becc155b73f8504c6f6626'
    assert OFFICIAL['inception_v3'].url == (base + 'inception_v3/'
                                            'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5')
    assert OFFICIAL['inception_v3'].md5 == 'bcbd6486424b2319ff4ef7d526e38f63'


@pytest.mark.parametrize('model', ['resnet50', 'inception_v3'])
def test_found_where_vgg16_is_and_offline_error_is_one_line(model, isolated, monkeypatch, tmp_path):
    import dataclasses
    import hashlib
    import jaxvis.edge.fetch as fetch
    import jaxvis.edge.locations as locations
    x = {m: dataclasses.replace(o, md5=hashlib.md5(b'x').hexdigest()) for m, o in OFFICIAL.items()}
    for mod in (W, fetch, locations):  # the stand-in files' content b'x' passes the cache's md5 check
        if hasattr(mod, 'OFFICIAL'):
            monkeypatch.setattr(mod, 'OFFICIAL', x)
    name = OFFICIAL[model].name
    for folder in (isolated.weights, isolated.keras, isolated.cache):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b'x')
        assert W.resolve(model, download=False) == folder / name
        (folder / name).unlink()
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tmp_path))
    (tmp_path / name).write_bytes(b'x')
    assert W.resolve(model, download=False) == tmp_path / name
    (tmp_path / name).unlink()
    with pytest.raises(WeightsError) as e:
        W.resolve(model, progress=False)  # the download fails: tests have no network
    msg = str(e.value)
    assert '\n' not in msg and 'HED' not in msg  # no fallback weights for these models
    for part in (name, OFFICIAL[model].url, 'download failed', 'weights/', '--weights'):
        assert part in msg, part


def test_cli_layers(keras_apps_h5, capsys):
    assert main(['layers', '--model', 'resnet50', '--weights', keras_apps_h5['resnet50'], '--quiet']) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows['conv5_block3_out'][1:4] == ['conv', '2048', '7x7'] and rows['pool1_pool'][3] == '56x56'
    assert main(['layers', '--model', 'inception_v3', '--weights', keras_apps_h5['resnet50'], '--quiet']) == 2
    assert 'not a inception_v3 notop file' in capsys.readouterr().err


def test_cli_filters_on_resnet50(keras_apps_h5, tmp_path):
    out = tmp_path / 'f'
    assert main(['filters', '--model', 'resnet50', '--weights', keras_apps_h5['resnet50'], '--layer',
                 'conv2_block1_out', '--filters', '0:2', '--steps', '3', '--size', '48', '--out', str(out),
                 '--quiet']) == 0
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['model'] == 'resnet50'
    assert [f['filter'] for f in manifest['layers']['conv2_block1_out']['filters']] == [0, 1]


def args_of(*argv):
    import argparse
    sub = argparse.ArgumentParser().add_subparsers()
    return add_parser(sub).parse_args(['photo.png', *argv])


def test_keras_io_preset_and_flags_that_win():
    cfg = dream_config(args_of('--model', 'inception_v3', '--preset', 'keras-io'))
    assert cfg.layers == {'mixed4': 1.0, 'mixed5': 1.5, 'mixed6': 2.0, 'mixed7': 2.5}
    assert (cfg.octaves, cfg.octave_scale, cfg.steps, cfg.step_size, cfg.name) == (3, 1.4, 20, 0.01, 'keras-io')
    assert {t.crop for t in cfg.objective.terms} == {2}
    cfg = dream_config(args_of('--preset', 'keras-io', '--steps', '5', '--layer', 'mixed5:3'))
    assert (cfg.steps, cfg.layers, cfg.octaves) == (5, {'mixed5': 3.0}, 3)
    plain = dream_config(args_of())
    assert (plain.octaves, plain.steps, plain.layers, plain.name) == (4, 10, {'block4_conv3': 1.0}, 'custom')
    with pytest.raises(JaxvisError, match='dream preset must be one of keras-io'):
        DreamConfig.preset('google')


def photo(path, side):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC).save(path)
    return str(path)


def test_cli_dream_keras_io_on_inception_v3(keras_apps_h5, tmp_path, capsys):
    small = photo(tmp_path / 'small.png', 100)  # mixed4-7 are 4x4 there: nothing left inside a 2-activation border
    assert main(['dream', small, '--model', 'inception_v3', '--preset', 'keras-io', '--quiet']) == 2
    assert 'too small for mixed4 with a 2-activation border' in capsys.readouterr().err  # before any weights
    src, out = photo(tmp_path / 'p.png', 139), tmp_path / 'd.png'
    assert main(['dream', src, '--model', 'inception_v3', '--weights', keras_apps_h5['inception_v3'], '--preset',
                 'keras-io', '--octaves', '1', '--steps', '2', '--out', str(out), '--quiet']) == 0
    manifest = json.loads((tmp_path / 'd.json').read_text())
    assert manifest['config']['preset'] == 'keras-io' and 'crop=2' in manifest['config']['objective']
    values = manifest['history'][0]['objective'][0]
    assert len(values) == 2 and values[1] > values[0]  # the objective goes up
    assert np.abs(np.asarray(Image.open(out), np.int16) - np.asarray(Image.open(src), np.int16)).max() > 0
