"""The atlas: its plan and dataset examples (pure), `jaxvis atlas` end to end on the tiny model, a run killed
with SIGKILL and resumed (the same bytes as an uninterrupted run), the refusal of a changed configuration,
the lock, the files' modes, and the site in a real (headless) Chromium."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxvis
from jaxvis.atlas import AtlasConfig, chunks, fingerprint, layer_costs
from jaxvis.atlas.examples import activation_maps, crop_box, dataset_examples, top_units
from jaxvis.cli import main
from jaxvis.edge import store
from jaxvis.models import get_model

from browser import Browser, find_chromium

ROOT = Path(jaxvis.__file__).resolve().parent.parent
SMALL = ['--model', 'tiny', '--size', '32', '--steps', '2', '--quiet']


def write_photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, shape in enumerate(((40, 56, 3), (48, 48, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f'photo{i}.png')
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the lock, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*'))
            if p.is_file() and p.name != store.LOCK}


# --- the plan and dataset examples: pure functions --------------------------------------------------------

def test_chunks_cover_every_filter_once_in_run_order():
    cfg = AtlasConfig(layers=('a', 'b'), chunk=3, diverse=2, examples=1)
    plan = chunks(cfg, {'a': np.arange(7), 'b': np.arange(2)}, steps=10, layer_cost={'a': 1.0, 'b': 4.0})
    filt = [c for c in plan if c.kind == 'filters']
    assert [c.filters for c in filt] == [(0, 1, 2), (3, 4, 5), (6,), (0, 1)]
    assert [(c.kind, c.layer) for c in plan][:6] == [('filters', 'a')] * 3 + [('diverse', 'a')] * 2 + [('examples', 'a')]
    assert len({c.name for c in plan}) == len(plan)
    assert filt[0].cost == 30.0 and filt[3].cost == 4.0 * 2 * 10
    assert fingerprint({'x': 1, 'y': [2]}) == fingerprint({'y': [2], 'x': 1}) != fingerprint({'x': 2, 'y': [2]})
    assert layer_costs({'a': (2, 2, 1), 'p': (1, 1, 4), 'b': (1, 1, 8)}, ['a', 'b']) == {'a': 1.0, 'b': 4.0}


def test_top_units_suppress_neighbours_exactly():
    maps = np.zeros((2, 4, 5), np.float32)
    maps[1, 2, 3], maps[1, 2, 2], maps[0, 0, 0], maps[1, 0, 0] = 9, 8, 7, 6
    where, scores = top_units(maps, 3, suppress=1)
    # (1, 2, 2) is next to the best unit and suppressed; then (0, 0, 0) and (1, 0, 0)
    assert where.tolist() == [[1, 2, 3], [0, 0, 0], [1, 0, 0]] and scores.tolist() == [9, 7, 6]
    where, scores = top_units(np.ones((1, 1, 1)), 2, suppress=1)
    assert where.tolist() == [[0, 0, 0], [-1, -1, -1]] and np.isnan(scores[1])
    # a 4x4 grid over 32 px: unit (1, 2) is centred at pixel (12, 20); radius 5 -> rows 7..17, cols 15..25
    assert crop_box(1, 2, (4, 4), (32, 32), 5) == (7, 15, 18, 26)
    # near a border the box keeps its side and moves inside the image
    assert crop_box(0, 0, (4, 4), (32, 32), 10) == (0, 0, 21, 21)
    assert crop_box(3, 3, (4, 4), (32, 32), 5) == (21, 21, 32, 32)
    assert crop_box(0, 0, (1, 1), (16, 24), 40) == (0, 0, 16, 16)


def test_dataset_examples_are_the_photo_crops_of_the_best_units(tiny_params):
    model = get_model('tiny')
    rng = np.random.default_rng(1)
    photos = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    ex = dataset_examples(tiny_params, 'block2_conv1', photos, [0, 3], model=model, k=2, crop=8, radius=4)
    maps = activation_maps(tiny_params, 'block2_conv1', photos, model=model)
    for i, f in enumerate([0, 3]):
        (p, r, c) = ex.where[i, 0]
        assert ex.scores[i, 0] == pytest.approx(maps[..., f].max(), rel=1e-6)
        assert maps[p, r, c, f] == pytest.approx(ex.scores[i, 0], rel=1e-6)
        assert ex.scores[i, 0] >= ex.scores[i, 1]
        t, l, b, rr = crop_box(r, c, maps.shape[1:3], (32, 32), 4)
        box = photos[p, t:b, l:rr]
        # the crop is the photo's box resized: its mean colour is the box's (a linear resize of 9x9 to 8x8)
        np.testing.assert_allclose(ex.crops[i, 0].mean(axis=(0, 1)), box.mean(axis=(0, 1)), rtol=0.05)
    assert ex.crops.shape == (2, 2, 8, 8, 3)


# --- the command ----------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def site(tmp_path_factory, tiny_h5):
    """One small atlas of the tiny model (two layers, three filters, diverse images and examples)."""
    base = tmp_path_factory.mktemp('atlas')
    photos = write_photos(base / 'photos')
    old = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
            mp.setenv('JAXVIS_COMPILE_CACHE', '0')
            rc = main(['atlas', *SMALL, '--layers', 'block1_conv1,block2_conv1', '--filters', '0:3', '--diverse', '1',
                       '--diverse-steps', '2', '--diverse-size', '32', '--examples', '2', '--photos', str(photos),
                       '--out', str(base / 'site')])
    finally:
        os.umask(old)
    assert rc == 0
    return base / 'site'


def test_site_pages_link_every_layer_and_filter(site):
    index = (site / 'index.html').read_text()
    for layer in ('block1_conv1', 'block2_conv1'):
        assert f'href="layer_{layer}.html"' in index
        page = (site / f'layer_{layer}.html').read_text()
        for f in range(3):
            assert f'href="filter_{layer}_{f}.html"' in page and f'data-gif="img/{layer}/{f}.gif"' in page
            assert Image.open(site / 'img' / layer / f'{f}.png').size == (32, 32)
            assert Image.open(site / 'img' / layer / f'{f}.gif').n_frames == 3  # steps 0, 1, 2
    page = (site / 'filter_block2_conv1_0.html').read_text()
    assert 'Diverse images' in page and 'img/block2_conv1/0_d2.png' in page
    assert 'Dataset examples' in page and 'img/block2_conv1/0_x1.png' in page
    assert 'not computed for this filter' in (site / 'filter_block2_conv1_1.html').read_text()
    weights = json.loads((site / 'job.json').read_text())['job']['weights_sha256']
    assert weights in index and 'http' not in index  # nothing from the network


def test_files_get_the_umask_mode(site):
    modes = {oct(p.stat().st_mode & 0o777) for p in site.rglob('*') if p.is_file() and p.name != store.LOCK}
    assert modes == {'0o644'}


def _atlas(out, *extra):
    return main(['atlas', *SMALL, '--layers', 'block1_conv1,block2_conv1', '--filters', '0:2', '--chunk', '1',
                 '--diverse', '0', '--examples', '0', '--out', str(out), *extra])


def test_killed_run_resumes_to_the_same_bytes(tmp_path, tiny_h5, monkeypatch):
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    assert _atlas(tmp_path / 'whole') == 0
    out = tmp_path / 'killed'
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JAXVIS_COMPILE_CACHE': '0'}
    proc = subprocess.Popen([sys.executable, '-m', 'jaxvis', 'atlas', *SMALL, '--layers', 'block1_conv1,block2_conv1',
                             '--filters', '0:2', '--chunk', '1', '--diverse', '0', '--examples', '0',
                             '--out', str(out)], env=env, stderr=subprocess.PIPE)
    first_layer = [out / 'chunks' / '00_filters_000.json', out / 'chunks' / '00_filters_001.json']
    deadline = time.monotonic() + 240
    while not all(p.exists() for p in first_layer) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (out / 'chunks').iterdir())
    assert proc.returncode == -signal.SIGKILL and 2 <= len(done) < 4, (done, proc.stderr.read().decode()[-500:])
    kept = {p: p.stat().st_mtime_ns for p in first_layer}
    assert _atlas(out) == 0  # the same command again: continues, the lock of the dead run is gone
    assert {p: p.stat().st_mtime_ns for p in first_layer} == kept  # finished chunks were not recomputed
    whole, resumed = tree(tmp_path / 'whole'), tree(out)
    assert sorted(whole) == sorted(resumed) and all(whole[k] == resumed[k] for k in whole)


def test_changed_config_is_refused_unless_overwrite(tmp_path, tiny_h5, monkeypatch, capsys):
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    out = tmp_path / 'a'
    assert _atlas(out) == 0
    capsys.readouterr()
    assert _atlas(out, '--seed', '3') == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'another configuration' in err and 'seed' in err and '--overwrite' in err
    assert _atlas(out, '--seed', '3', '--overwrite') == 0
    assert json.loads((out / 'job.json').read_text())['job']['seed'] == 3


def _one_filter_atlas(out, *extra):
    """The smallest atlas: one filter of the first layer, one step (what a job records does not depend on
    its size)."""
    return main(['atlas', '--model', 'tiny', '--size', '32', '--steps', '1', '--quiet', '--layers', 'block1_conv1',
                 '--filters', '0:1', '--chunk', '1', '--diverse', '0', '--examples', '0', '--out', str(out), *extra])


def test_rescue_in_the_job_only_where_it_changed(tmp_path, tiny_h5, monkeypatch, capsys):
    """The job (and so its fingerprint) records the rescue only where it differs from before it was
    recorded (lucid rescued, seed and maco did not): atlases begun then resume; --no-rescue with lucid
    and maco's default are other configurations; --rescue with seed is one line, exit 2."""
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    job = lambda out: json.loads((out / 'job.json').read_text())['job']
    for name, flags, recorded in (('s', (), None), ('l', ('--preset', 'lucid'), None),
                                  ('m', ('--preset', 'maco'), True), ('mn', ('--preset', 'maco', '--no-rescue'), None)):
        assert _one_filter_atlas(tmp_path / name, *flags) == 0
        assert job(tmp_path / name).get('rescue') is recorded, name
    capsys.readouterr()
    assert _one_filter_atlas(tmp_path / 'l', '--preset', 'lucid', '--no-rescue') == 2
    err = capsys.readouterr().err
    assert 'another configuration' in err and 'rescue' in err
    assert _one_filter_atlas(tmp_path / 'x', '--rescue') == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '--rescue' in err and not (tmp_path / 'x').exists()


def test_width_in_the_job_only_where_not_the_default(tmp_path, tiny_h5, monkeypatch, capsys):
    """--width 4 is recorded (another configuration than the default's folder); the default, as before
    the flag, is not."""
    from jaxvis.atlas import compute
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    real, widths = compute.visualize_filters, []
    monkeypatch.setattr(compute, 'visualize_filters', lambda *a, **k: (widths.append(k['width']), real(*a, **k))[1])
    job = lambda out: json.loads((out / 'job.json').read_text())['job']
    assert _atlas(tmp_path / 'w', '--width', '4') == 0 and job(tmp_path / 'w')['width'] == 4
    assert widths == [4] * 4  # 2 layers x 2 chunks of 1 filter
    assert _atlas(tmp_path / 'd') == 0 and 'width' not in job(tmp_path / 'd')
    capsys.readouterr()
    assert _atlas(tmp_path / 'd', '--width', '4') == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'another configuration' in err and 'differs in: width)' in err


def test_second_writer_is_held_off_by_the_lock(tmp_path, tiny_h5, monkeypatch, capsys):
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    out = tmp_path / 'busy'
    with store.lock(str(out)):
        assert _atlas(out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'in use by jaxvis pid' in err
    assert not (out / 'job.json').exists()  # refused before anything was written


def test_bad_input_is_one_line_before_any_compute(tmp_path, capsys):
    assert main(['atlas', *SMALL, '--layers', 'block1_conv9', '--out', str(tmp_path / 'x')]) == 2
    assert main(['atlas', *SMALL, '--filters', '0:2', '--photos', str(tmp_path / 'none'), '--out', str(tmp_path / 'x')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and 'unknown layer' in err[0] and 'is not a folder' in err[1]
    assert not (tmp_path / 'x').exists()


# --- the site in a real browser --------------------------------------------------------------------------

@pytest.mark.skipif(find_chromium() is None, reason='no chromium (Debian: apt-get install chromium; .ci/run does)')
def test_site_loads_in_headless_chromium(site, tmp_path):
    browser = Browser(find_chromium())
    try:
        for page in ('index.html', 'layer_block2_conv1.html', 'filter_block2_conv1_0.html'):
            got = browser.open((site / page).as_uri())
            assert got['errors'] == [], (page, got['errors'])
            assert got['images'] and all(width > 0 for _, width in got['images']), (page, got['images'])
            assert 'atlas of tiny' in got['title']
            (tmp_path / f'{page}.png').write_bytes(got['screenshot'])
            assert Image.open(tmp_path / f'{page}.png').size[0] > 0
        assert len(browser.open((site / 'filter_block2_conv1_0.html').as_uri())['images']) == 2 + 3 + 2
    finally:
        browser.close()
