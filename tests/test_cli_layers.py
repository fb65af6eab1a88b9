"""``jaxvis layers`` and ``jaxvis weights`` through jaxvis.cli.main (no network), on the tiny model."""
import dataclasses
import hashlib

import pytest

import jaxvis.edge.locations as W
from jaxvis.cli import main

V16 = W.OFFICIAL['vgg16'].name


def row(out, layer):
    [line] = [ln for ln in out.splitlines() if ln.split()[:1] == [layer]]
    return line.split()


def one_error_line(err, *parts):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('jaxvis: error:') or lines[0].startswith('jaxvis ')
    for p in parts:
        assert p in lines[0], (p, lines[0])


def test_layers_table_at_224(tiny_h5, capsys):
    assert main(['layers', '--model', 'tiny', '--weights', tiny_h5, '--size', '224']) == 0
    out, err = capsys.readouterr()
    assert row(out, 'block5_conv3')[:4] == ['block5_conv3', 'conv', '8', '14x14']
    assert row(out, 'block1_conv1')[:4] == ['block1_conv1', 'conv', '4', '224x224']
    assert row(out, 'block5_pool')[:4] == ['block5_pool', 'pool', '8', '7x7']
    assert row(out, 'block5_conv3')[4] == f'{3 * 3 * 8 * 8 + 8:,}'
    assert row(out, 'block1_conv1')[4] == f'{3 * 3 * 3 * 4 + 4:,}'
    assert len([ln for ln in out.splitlines() if ln.startswith('block')]) == 18
    assert 'tiny_notop.h5 (user' in out  # which weights are in use, on stdout
    assert 'tiny_notop.h5' in err and tiny_h5 in err


def test_layers_odd_size_floors_and_too_small_shows_dash(tiny_h5, capsys):
    assert main(['layers', '--model', 'tiny', '--weights', tiny_h5, '--size', '100', '--quiet']) == 0
    out, err = capsys.readouterr()
    assert row(out, 'block3_pool')[3] == '12x12' and row(out, 'block5_conv3')[3] == '6x6'
    assert err == ''
    assert main(['layers', '--model', 'tiny', '--weights', tiny_h5, '--size', '20', '--quiet']) == 0
    out = capsys.readouterr().out
    assert row(out, 'block4_pool')[3] == '1x1' and row(out, 'block5_pool')[3] == '-'


def test_layers_finds_official_file_in_weights_folder(isolated, tiny_h5, capsys):
    """vgg16's file is found in ./weights under its official name, then checked: here it holds the tiny
    model's weights, which the error line says."""
    isolated.weights.mkdir()
    (isolated.weights / V16).symlink_to(tiny_h5)
    assert main(['layers', '--quiet']) == 2
    one_error_line(capsys.readouterr().err, str(isolated.weights / V16), "'block1_conv1' has kernel")


def test_layers_bad_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / 'bad.h5'
    bad.write_text('not weights\n')
    assert main(['layers', '--weights', str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ''
    one_error_line(err, 'jaxvis: error:', str(bad), 'not an HDF5 file')


def test_layers_missing_weights_offline_is_one_line_exit_2(isolated, capsys):
    assert main(['layers', '--quiet']) == 2
    one_error_line(capsys.readouterr().err, 'no vgg16 weights', 'weights/', '--weights')


@pytest.mark.parametrize('argv, parts', [
    (['layers', '--size', 'big'], ['invalid int']),
    (['weights', '--source', 'imagenet'], ['invalid choice']),
])
def test_bad_arguments_exit_2(argv, parts, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    one_error_line(capsys.readouterr().err, *parts)


@pytest.mark.parametrize('argv, parts', [
    (['layers', '--model', 'nope'], ["unknown model 'nope'", 'vgg16']),
    (['layers', '--model', 'tiny'], ["model 'tiny' has no weights file", '--weights']),
    (['layers', '--size', '0'], ['size must be >= 1, got 0']),
    (['weights', '--fetch', '--model', 'vgg19', '--source', 'hed'], ['VGG16 weights only']),
    (['weights', '--source', 'hed'], ['--source needs --fetch']),
])
def test_user_errors_exit_2(argv, parts, isolated, capsys):
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, *parts)


@pytest.mark.parametrize('cmd', ['layers', 'weights'])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, '--help'])
    assert e.value.code == 0
    assert f'usage: jaxvis {cmd}' in capsys.readouterr().out


def test_weights_lists_temp_cache(isolated, monkeypatch, tmp_path, capsys):
    cache = tmp_path / 'jc'
    monkeypatch.setenv('JAXVIS_CACHE', str(cache))
    assert main(['weights']) == 0
    assert 'no weights files found' in capsys.readouterr().out
    cache.mkdir()
    (cache / V16).write_bytes(b'k' * 3000)
    (cache / W.HED.name).write_bytes(b'h')
    assert main(['weights']) == 0
    out = capsys.readouterr().out
    assert str(cache) in out.splitlines()[0]  # the search locations, in order
    k = row(out, V16)
    assert k[1:4] == ['keras', '2.9', 'KiB'] and k[4] == hashlib.sha256(b'k' * 3000).hexdigest()[:16]
    assert k[5] == str((cache / V16).resolve())
    assert row(out, W.HED.name)[1] == 'hed'


def test_weights_fetch_reports_file_or_one_error_line(isolated, capsys, monkeypatch):
    assert main(['weights', '--fetch', '--quiet']) == 2  # offline (autouse fixture)
    one_error_line(capsys.readouterr().err, 'download failed', 'HED fallback', 'weights/')
    official = dataclasses.replace(W.OFFICIAL['vgg16'], md5=hashlib.md5(b'present').hexdigest())
    monkeypatch.setattr(W, 'OFFICIAL', {**W.OFFICIAL, 'vgg16': official})  # the cached file passes its check
    isolated.keras.mkdir(parents=True)
    (isolated.keras / V16).write_bytes(b'present')
    assert main(['weights', '--fetch', '--source', 'keras']) == 0
    assert row(capsys.readouterr().out, V16)[1] == 'keras'
