"""`jaxvis filters` end to end on the tiny model, its weights in a small file in the official layout."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import jaxvis.cli.filters as cli_filters
from jaxvis.cli import main
from jaxvis.edge.locations import file_digest


@pytest.fixture
def tiny_cli(monkeypatch, tiny_h5):
    """``--model tiny`` reads its weights from ``$JAXVIS_WEIGHTS`` (a model without an official file)."""
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    return tiny_h5


def run(tmp_path, *extra, out='out'):
    return main(['filters', '--model', 'tiny', '--size', '32', '--steps', '4', '--quiet',
                 '--out', str(tmp_path / out), *extra])


def test_writes_pngs_grid_and_manifest(tiny_cli, tmp_path):
    assert run(tmp_path, '--layer', 'block3_conv2', '--filters', '0:6') == 0
    out = tmp_path / 'out'
    for f in range(6):
        assert Image.open(out / f'block3_conv2_{f}.png').size == (32, 32)
    m = json.loads((out / 'manifest.json').read_text())
    entry = m['layers']['block3_conv2']
    assert [e['filter'] for e in entry['filters']] == list(range(6))
    assert m['weights']['sha256'] == file_digest(tiny_cli) and m['seed'] == 0 and m['config']['steps'] == 4
    live = [e for e in entry['filters'] if not e['dead']]
    # grid holds the live filters best first, 5 px margins between 32 px tiles
    losses = {e['filter']: e['loss'] for e in live}
    assert entry['grid_order'] == sorted(losses, key=lambda f: -losses[f])
    rows = -(-len(live) // int(np.ceil(np.sqrt(len(live)))))
    cols = int(np.ceil(np.sqrt(len(live))))
    assert Image.open(out / 'block3_conv2_grid.png').size == (cols * 32 + (cols - 1) * 5, rows * 32 + (rows - 1) * 5)


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_cli, tmp_path):
    for name, seed in (('a', '1'), ('b', '1'), ('c', '2')):
        assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:3', '--seed', seed, out=name) == 0
    read = lambda d: (tmp_path / d / 'block2_conv1_1.png').read_bytes()
    assert read('a') == read('b')
    assert read('a') != read('c')


def test_gif_has_a_frame_per_snapshot(tiny_cli, tmp_path):
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:4', '--gif', '--snapshot-every', '2') == 0
    gif = Image.open(tmp_path / 'out' / 'block2_conv1.gif')
    assert gif.n_frames == 3  # steps 0, 2, 4


@pytest.mark.parametrize('args, says', [
    (['--layer', 'block9_conv1'], 'valid layers: block1_conv1'),
    (['--layer', 'block1_conv1', '--filters', '0:99'], 'block1_conv1 has 4 filters'),
    (['--layer', 'block1_conv1', '--filters', '7'], 'block1_conv1 has 4 filters'),
    (['--layer', 'block1_conv1', '--filters', 'x:y'], 'bad --filters'),
    (['--layer', 'block5_conv1', '--size', '8'], 'too small for block5_conv1'),
])
def test_bad_input_one_line_exit_2_nothing_written(tiny_cli, tmp_path, capsys, args, says):
    code = main(['filters', '--model', 'tiny', '--quiet', '--out', str(tmp_path / 'out'), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert says in err and err.count('\n') == 1
    assert not (tmp_path / 'out').exists()


def test_unwritable_output_folder(tiny_cli, tmp_path, capsys):
    (tmp_path / 'file').write_text('x')
    code = main(['filters', '--model', 'tiny', '--quiet', '--layer', 'block1_conv1', '--filters', '0:2',
                 '--out', str(tmp_path / 'file' / 'sub')])
    err = capsys.readouterr().err
    assert code == 2 and 'cannot create output folder' in err and err.count('\n') == 1


def test_ctrl_c_keeps_finished_layers_and_leaves_no_partial_file(tiny_cli, tmp_path, monkeypatch, capsys):
    real = cli_filters.visualize_filters
    calls = []

    def interrupted_second_time(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cli_filters, 'visualize_filters', interrupted_second_time)
    code = run(tmp_path, '--layer', 'all', '--filters', '0:2')
    assert code == 130 and 'interrupted' in capsys.readouterr().err
    out = tmp_path / 'out'
    assert {'.jaxvis.lock', 'job.json'} <= set(os.listdir(out))  # the lock and the job a rerun continues
    names = sorted(n for n in os.listdir(out) if n not in ('.jaxvis.lock', 'job.json'))
    assert names == sorted(['block1_conv1_0.png', 'block1_conv1_1.png', 'block1_conv1_grid.png', 'manifest.json'])
    assert list(json.loads((out / 'manifest.json').read_text())['layers']) == ['block1_conv1']
    for n in names[:-1]:
        Image.open(out / n).load()  # complete, readable


def test_lucid_preset_runs_and_is_shown_unnormalized(tiny_cli, tmp_path):
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:2', '--preset', 'lucid') == 0
    m = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert m['normalize'] == 'clip' and m['preset'] == 'lucid'
    assert m['config']['rescue']['transform'] == 'identity'
    layer = m['layers']['block2_conv1']
    assert [f['rescued'] for f in layer['filters']] == [False, False] and layer['rescued_count'] == 0  # both fire
    assert Image.open(tmp_path / 'out' / 'block2_conv1_0.png').size == (32, 32)


def test_maco_preset_writes_the_transparency(tiny_cli, tmp_path):
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:2', '--preset', 'maco') == 0
    m = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert m['normalize'] == 'clip' and m['config']['param'] == 'maco(sd=1.0)' and m['config']['restarts']
    alpha = Image.open(tmp_path / 'out' / 'block2_conv1_1_alpha.png')
    assert alpha.mode == 'RGBA' and alpha.size == (32, 32)
    assert Image.open(tmp_path / 'out' / 'block2_conv1_1.png').mode == 'RGB'


def test_rescue_flags(tiny_cli, tmp_path, capsys):
    """--no-rescue drops the preset's rescue (manifest config without one); --rescue on a preset without
    one is one line and exit 2, before anything is written."""
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:2', '--preset', 'maco', '--no-rescue') == 0
    m = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert m['config']['rescue'] is None and m['layers']['block2_conv1']['rescued_count'] == 0
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:2', '--preset', 'seed', '--no-rescue',
               out='s') == 0
    capsys.readouterr()
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:2', '--preset', 'seed', '--rescue', out='r') == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '--rescue' in err and 'seed' in err and not (tmp_path / 'r').exists()


def test_width_flag(tiny_cli, tmp_path, capsys, monkeypatch):
    """--width 4: the manifest and the job say 4, and --batch-size 8 (two groups of 4 in one call) gives
    the same bytes; the default records 8 in the manifest and nothing in the job (folders begun before the
    flag resume); the same folder without --width is another configuration, one line and exit 2."""
    args = ('--layer', 'block2_conv1', '--filters', '0:3', '--normalize', 'clip')
    real, widths = cli_filters.visualize_filters, []
    monkeypatch.setattr(cli_filters, 'visualize_filters', lambda *a, **k: (widths.append(k['width']), real(*a, **k))[1])
    assert run(tmp_path, *args, '--width', '4') == 0
    assert widths == [4]
    assert run(tmp_path, *args, '--width', '4', '--batch-size', '8', out='b8') == 0
    assert run(tmp_path, *args, out='d') == 0
    m = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert m['width'] == 4 and json.loads((tmp_path / 'out' / 'job.json').read_text())['job']['width'] == 4
    assert json.loads((tmp_path / 'd' / 'manifest.json').read_text())['width'] == 8
    assert 'width' not in json.loads((tmp_path / 'd' / 'job.json').read_text())['job']
    for f in range(3):
        png = np.asarray(Image.open(tmp_path / 'out' / f'block2_conv1_{f}.png'))
        np.testing.assert_array_equal(png, np.asarray(Image.open(tmp_path / 'b8' / f'block2_conv1_{f}.png')))
    capsys.readouterr()
    assert run(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'another configuration' in err and 'differs in: width)' in err


def test_compile_cache_folder(monkeypatch, isolated):
    """The CLI keeps compiled steps in <jaxvis cache>/xla, unless turned off or already configured."""
    import jax

    from jaxvis.cli.common import use_compile_cache

    before = jax.config.jax_compilation_cache_dir
    small = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        jax.config.update('jax_compilation_cache_dir', None)
        use_compile_cache()  # JAXVIS_COMPILE_CACHE=0 in every test
        assert jax.config.jax_compilation_cache_dir is None
        monkeypatch.setenv('JAXVIS_COMPILE_CACHE', '1')
        monkeypatch.delenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', raising=False)  # the conftest sets it
        use_compile_cache()
        assert jax.config.jax_compilation_cache_dir == str(isolated.cache / 'xla')
        assert (isolated.cache / 'xla').is_dir()
        # small functions are kept too (JAX's default keeps only compiles of 1 s or more) ...
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        # ... unless the user chose a threshold
        jax.config.update('jax_compilation_cache_dir', None)
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 2.5)
        monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '2.5')
        use_compile_cache()
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5
        jax.config.update('jax_compilation_cache_dir', '/somewhere/else')
        use_compile_cache()
        assert jax.config.jax_compilation_cache_dir == '/somewhere/else'
    finally:
        jax.config.update('jax_compilation_cache_dir', before)
        jax.config.update('jax_persistent_cache_min_compile_time_secs', small)


def test_drop_dead_default_and_flags(tiny_cli, tmp_path, capsys):
    """seed drops dead filters by default (same images for them); --no-drop-dead computes every step;
    a preset that can move zero-gradient images refuses --drop-dead with one line."""
    assert run(tmp_path, '--layer', 'block3_conv2', '--filters', '0:6', out='auto') == 0
    assert run(tmp_path, '--layer', 'block3_conv2', '--filters', '0:6', '--no-drop-dead', out='all') == 0
    auto = json.loads((tmp_path / 'auto' / 'manifest.json').read_text())
    full = json.loads((tmp_path / 'all' / 'manifest.json').read_text())
    assert auto['drop_dead'] is True and full['drop_dead'] is False
    dead = [e['filter'] for e in full['layers']['block3_conv2']['filters'] if e['dead']]
    assert dead  # the tiny test params have a dead filter in this layer
    assert dead == [e['filter'] for e in auto['layers']['block3_conv2']['filters'] if e['dead']]
    for f in dead:
        a = np.asarray(Image.open(tmp_path / 'auto' / f'block3_conv2_{f}.png'))
        np.testing.assert_array_equal(a, np.asarray(Image.open(tmp_path / 'all' / f'block3_conv2_{f}.png')))
    capsys.readouterr()
    assert run(tmp_path, '--layer', 'block3_conv2', '--filters', '0:6', '--preset', 'jacobgil', '--drop-dead',
               out='bad') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'drop_dead needs' in err[0]
    assert not (tmp_path / 'bad').exists()


def test_conv_flag_recorded(tiny_cli, tmp_path):
    assert run(tmp_path, '--layer', 'block2_conv1', '--filters', '0:2', '--conv', 'winograd2') == 0
    m = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert m['config']['conv'] == 'winograd2'


def test_rerun_skips_finished_layers_and_refuses_another_config(tiny_cli, tmp_path, capsys):
    args = ('--layer', 'block2_conv1', '--filters', '0:2')
    assert run(tmp_path, *args) == 0
    png = tmp_path / 'out' / 'block2_conv1_0.png'
    before = png.stat().st_mtime_ns
    assert run(tmp_path, *args) == 0 and png.stat().st_mtime_ns == before  # not recomputed
    capsys.readouterr()
    assert run(tmp_path, *args, '--seed', '5') == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'another configuration' in err and 'seed' in err
    assert run(tmp_path, *args, '--seed', '5', '--overwrite') == 0 and png.stat().st_mtime_ns != before
