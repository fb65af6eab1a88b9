"""Bad input and a hostile disk (#18): one line and exit 2 before any work, write errors in one line
with every finished file complete and nothing half-written, on the tiny model."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import jaxvis.edge.files as files
from jaxvis.cli import main
from jaxvis.errors import JaxvisError

IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0
HAS_PROC = os.path.isdir('/proc/self')


@pytest.fixture
def tiny_cli(monkeypatch, tiny_h5):
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    return tiny_h5


@pytest.fixture
def photo(tmp_path):
    src = tmp_path / 'in.png'
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((64, 48), Image.BICUBIC).save(src)
    return src


BOOKKEEPING = ('.jaxvis.lock', 'job.json')  # a filters folder's lock and configuration (jaxvis.edge.store)


def files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
                  if f not in BOOKKEEPING)


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- every command, a table of bad inputs
# No --quiet: a check that ran after loading the weights or starting the bar would show a second line.

F = ['filters', '--model', 'tiny', '--size', '32', '--steps', '2', '--layer', 'block1_conv1', '--filters', '0:2']
D = ['dream', '{photo}', '--model', 'tiny', '--layer', 'block3_conv3', '--octaves', '1', '--steps', '1']
BAD = [  # (command, extra arguments, words the one line must hold)
    (F, ['--jitter', '-4'], 'jitter'), (F, ['--jitter', '100000'], 'jitter'),
    (F, ['--decay', '1'], 'decay'), (F, ['--blur-sigma', '-1'], 'blur sigma'),
    (F, ['--blur-every', '0'], 'blur every'), (F, ['--norm-pct', '101'], 'norm percentile'),
    (F, ['--contrib-pct', '-1'], 'contribution percentile'), (F, ['--step-size', 'nan'], 'step_size'),
    (F, ['--steps', '0'], 'steps'), (F, ['--size', '0'], 'size'),
    (F, ['--size', '1000000'], 'of memory'), (F, ['--seed', '-1'], 'seed'),
    (F, ['--seed', '99999999999999999999'], 'seed'), (F, ['--batch-size', '0'], 'batch_size'), (F, ['--width', '0'], 'width'),
    (F, ['--best', '0'], 'best'), (F, ['--margin', '-1'], 'margin'), (F, ['--margin', '100000'], 'margin'),
    (F, ['--gif', '--snapshot-every', '0'], 'snapshot_every'), (F, ['--filters', '5:2'], 'no filters'),
    (F, ['--filters', '-1'], 'out of range'), (F, ['--preset', 'lucid', '--jitter', '3'], 'lucid'),
    (F, ['--layer', 'nosuch'], 'valid layers'), (F, ['--preset', 'nosuch'], 'invalid choice'),
    (F, ['--steps', 'many'], 'invalid int'),
    (D, ['--tile-size', '3'], 'stride'), (D, ['--tile-size', '0'], 'tile size'),
    (D, ['--fps', '0'], 'fps'), (D, ['--fps', '100000'], 'fps'), (D, ['--frames', '0'], 'frames'),
    (D, ['--octave-scale', '0.5'], 'octave scale'), (D, ['--octave-scale', 'inf'], 'octave scale'),
    (D, ['--octaves', '0'], 'octaves'), (D, ['--max-size', '-1'], 'max size'), (D, ['--zoom', '0'], 'zoom'),
    (D, ['--rotate', '1000'], 'rotate'), (D, ['--seed', '-5'], 'seed'), (D, ['--tile-margin', '-1'], 'tile margin'),
    (D, ['--step-size', '0'], 'step size'), (D, ['--steps', '0'], 'steps'), (D, ['--blur-sigma', '-1'], 'blur'),
    (D, ['--out', '{tmp}/out/d.jpg'], '.png'), (D, ['--layer', 'block3_conv3:abc'], 'not a number'),
    (D, ['--layer', 'nosuch'], 'valid layers'),
    (['dream', '{tmp}/missing.png', '--model', 'tiny'], [], 'missing.png'),
    (['layers', '--model', 'tiny', '--size', '0'], [], 'size'), (['layers', '--model', 'nosuch'], [], 'nosuch'),
    (['weights', '--source', 'hed'], [], '--fetch'), (['weights', '--model', 'vgg99'], [], 'vgg99'),
]
if HAS_PROC:  # places os.access approves for root that cannot be written: refused before any work
    BAD += [(F[:1] + ['--out', '/proc/jaxvis_o'] + F[1:], [], '/proc/jaxvis_o'),
            (D, ['--out', '/proc/jaxvis.png'], '/proc'), (D, ['--gif', '/proc/jaxvis.gif', '--frames', '2'], '/proc'),
            (D, ['--mp4', '/proc/jaxvis.mp4', '--frames', '2'], '/proc'),
            (D, ['--frames-dir', '/proc/jaxvis_fr', '--frames', '2'], '/proc/jaxvis_fr')]


@pytest.mark.parametrize('command, extra, words', BAD, ids=[' '.join(c[:1] + e) for c, e, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(command, extra, words, tiny_cli, tmp_path, photo,
                                                         capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'out'
    argv = [a.format(photo=photo, tmp=tmp_path) for a in command + extra]
    if argv[0] == 'filters' and '--out' not in argv:
        argv += ['--out', str(out)]
    if argv[0] == 'dream' and '--out' not in argv:
        argv += ['--out', str(out / 'd.png')]
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert err.count('\n') == 1 and err.startswith('jaxvis') and 'Traceback' not in err, err
    assert words in err, err
    assert files_under(tmp_path) == ['in.png']


def test_a_bad_input_run_as_a_program_is_one_line_too(tiny_cli, tmp_path):
    """The real process: what reaches the terminal, with the interpreter's own exit paths."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([os.getcwd(), *sys.path])}
    proc = subprocess.run([sys.executable, '-m', 'jaxvis', 'filters', '--model', 'tiny', '--layer', 'block1_conv1',
                           '--jitter', '-4', '--out', str(tmp_path / 'o')], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1 and 'jitter' in proc.stderr, proc.stderr
    assert not (tmp_path / 'o').exists()


# ---------------------------------------------------------------- the library says the same, where it defines the option

def _library_cases():
    from jaxvis import display, transforms as T, regularizers as R, util
    from jaxvis.dream import DreamConfig
    from jaxvis.visualize import preset
    return [
        (lambda: T.jitter(-4), 'jitter must be in [0, 4096], got -4'),
        (lambda: T.pad(-1), 'pad width must be in [0, 4096], got -1'),
        (lambda: T.crop_jitter(-2), 'crop jitter must be in [0, 4096], got -2'),
        (lambda: T.random_scale(()), 'random_scale needs at least one scale'),
        (lambda: T.random_scale((0.0, 1.0)), 'scale must be in (0, 16], got 0.0'),
        (lambda: T.random_rotate((1000.0,)), 'angle must be in [-360, 360], got 1000.0'),
        (lambda: R.gaussian_blur(1.0, 0), 'blur every must be >= 1, got 0'),
        (lambda: preset('seed', blur_every=0), 'blur every must be >= 1, got 0'),
        (lambda: preset('seed', decay=1.0), 'decay must be in [0, 1), got 1.0'),
        (lambda: DreamConfig(octave_scale=0.5), 'octave scale must be in [1, 4], got 0.5'),
        (lambda: files.check_fps(0), 'fps must be in [1, 100], got 0'),
        (lambda: files.save_gif('x.gif', [np.zeros((2, 2, 3), np.uint8)], duration_ms=1),
         'GIF frame duration (ms) must be >= 10, got 1'),
        (lambda: display.check_margin(-1), 'margin must be in [0, 256], got -1'),
        (lambda: display.grid([np.zeros((2, 2, 3), np.uint8)], margin=1000), 'margin must be in [0, 256], got 1000'),
        (lambda: util.check_seed(2**32), 'seed must be in [0, 4294967295], got 4294967296'),
    ]


@pytest.mark.parametrize('i', range(15))
def test_library_raises_the_same_one_line(i):
    call, message = _library_cases()[i]
    with pytest.raises(JaxvisError) as e:
        call()
    assert str(e.value) == message


def test_cli_line_is_the_library_message(tiny_cli, tmp_path, capsys):
    from jaxvis import transforms as T
    with pytest.raises(JaxvisError) as e:
        T.jitter(-4)
    code, err = run_cli(F + ['--jitter', '-4', '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and err == f'jaxvis: error: {e.value}\n'


# ---------------------------------------------------------------- output checked by writing

@pytest.mark.skipif(not HAS_PROC, reason='needs /proc')
def test_a_place_os_access_approves_but_cannot_be_written(tmp_path):
    if IS_ROOT:
        assert os.access('/proc', os.W_OK)  # what the old check trusted
    with pytest.raises(JaxvisError, match='cannot write in output folder /proc'):
        files.check_out_file('/proc/jaxvis.png')
    with pytest.raises(JaxvisError, match='cannot create output folder /proc/x'):
        files.check_out_dir('/proc/x')
    assert files.check_out_dir(str(tmp_path / 'a' / 'b')) and files_under(tmp_path) == []


def test_a_read_only_folder_is_refused_before_any_work(monkeypatch, tmp_path):
    """As an unprivileged user or on a read-only mount: the probe file cannot be made."""
    real = files.tempfile.mkstemp

    def read_only(*a, dir=None, **k):
        if dir == str(tmp_path / 'ro'):
            raise OSError(errno.EROFS, 'Read-only file system')
        return real(*a, dir=dir, **k)
    (tmp_path / 'ro').mkdir()
    monkeypatch.setattr(files.tempfile, 'mkstemp', read_only)
    with pytest.raises(JaxvisError, match=r'^cannot write in output folder .*ro: read-only file system$'):
        files.check_out_file(str(tmp_path / 'ro' / 'x.png'))


# ---------------------------------------------------------------- write errors: one line, nothing half-written

def disk_fills_after(monkeypatch, n_ok: int, err=errno.ENOSPC):
    """Pillow's writes fail like a full disk (half a file written, then ENOSPC) after ``n_ok`` good ones."""
    real, done = Image.Image.save, []

    def save(self, fp, *a, **k):
        if len(done) >= n_ok:
            with open(fp, 'wb') as f:
                f.write(b'\x89PNG half')
            raise OSError(err, os.strerror(err))
        done.append(fp)
        return real(self, fp, *a, **k)
    monkeypatch.setattr(Image.Image, 'save', save)


@pytest.mark.parametrize('err, reason', [(errno.ENOSPC, 'no space left on device'), (errno.EIO, 'input/output error'),
                                         (errno.EROFS, 'read-only file system'), (errno.EDQUOT, 'disk quota exceeded')])
def test_atomic_writer_turns_disk_errors_into_one_line(err, reason, monkeypatch, tmp_path):
    disk_fills_after(monkeypatch, 1, err)
    files.save_png(str(tmp_path / 'a.png'), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(JaxvisError) as e:
        files.save_png(str(tmp_path / 'b.png'), np.zeros((4, 4, 3), np.uint8))
    assert str(e.value) == f'{reason} writing {tmp_path / "b.png"}'
    assert files_under(tmp_path) == ['a.png']


def test_filters_on_a_full_disk(tiny_cli, tmp_path, monkeypatch, capsys):
    disk_fills_after(monkeypatch, 2)
    code, err = run_cli(F + ['--filters', '0:4', '--quiet', '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and err == f'jaxvis: error: no space left on device writing {tmp_path / "o" / "block1_conv1_2.png"}\n'
    assert files_under(tmp_path / 'o') == ['block1_conv1_0.png', 'block1_conv1_1.png']
    for f in files_under(tmp_path / 'o'):
        Image.open(tmp_path / 'o' / f).load()  # complete


def test_dream_sequence_on_a_full_disk_keeps_frames_and_a_manifest_that_matches(tiny_cli, tmp_path, photo,
                                                                                monkeypatch, capsys):
    disk_fills_after(monkeypatch, 2)
    out = tmp_path / 'o' / 'd.png'
    argv = [a.format(photo=photo) for a in D] + ['--quiet', '--frames', '3', '--out', str(out),
                                                  '--gif', str(tmp_path / 'o' / 'd.gif')]
    code, err = run_cli(argv, capsys)
    frames = tmp_path / 'o' / 'd_frames'
    assert code == 2 and err == f'jaxvis: error: no space left on device writing {frames / "frame_0002.png"}\n'
    assert files_under(tmp_path / 'o') == ['d.json', 'd_frames/frame_0000.png', 'd_frames/frame_0001.png']
    m = json.loads((tmp_path / 'o' / 'd.json').read_text())
    assert m['frames_done'] == 2 and len(m['history']) == 2 and not m['interrupted']
    assert m['outputs'] == {'frames_dir': str(frames)} and 'no space left' in m['error']


def test_mp4_encoder_failure_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(files.subprocess, 'run', lambda cmd, **k: subprocess.CompletedProcess(
        cmd, 1, stdout=b'', stderr=b'[out#0] Error opening output\nError writing trailer: No space left on device\n'))
    with pytest.raises(JaxvisError) as e:
        files.save_mp4(str(tmp_path / 'a.mp4'), [np.zeros((4, 4, 3), np.uint8)])
    assert '\n' not in str(e.value) and 'No space left on device' in str(e.value)
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------- a real full filesystem, where one may be mounted

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs filled up to about 20 KB free: the lock and job.json, then a few PNGs (root with CAP_SYS_ADMIN only; skipped elsewhere)."""
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    if not IS_ROOT or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mnt)],
                                     capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)')
    try:
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / 'filler').write_bytes(b'\0' * (free - 20 * 1024))
        yield mnt
    finally:
        subprocess.run(['umount', str(mnt)], check=True)


def test_filters_on_a_real_full_tmpfs(tiny_cli, small_tmpfs, capsys):
    out = small_tmpfs / 'o'
    code, err = run_cli(F[:-1] + ['0:4', '--quiet', '--out', str(out)], capsys)
    assert code == 2 and err.count('\n') == 1 and 'no space left on device writing ' + str(out) in err, err
    written = files_under(out)
    assert written and not [f for f in written if f.endswith('.part') or f.startswith('.')]
    for f in written:
        Image.open(out / f).load()  # every file there is complete
