"""Many processes through JAX's distributed runtime, on one machine: two CPU processes on 127.0.0.1, each
with 2 forced host devices, against one process with 1 device (the same bytes); a folder shared by the
processes and a folder per process; a peer killed mid-run (the other ends in one line, exit 2, and a rerun
of both completes to the same bytes); processes started with different configs (refused). Every port is
chosen free at run time, every process has a timeout. Also the pure pieces: the split, the packing, the
runtime-log summary."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import jaxvis
from jaxvis.backend import memory
from jaxvis.backend.hosts import split
from jaxvis.cli import main
from jaxvis.edge import multi, store
from jaxvis.edge.cluster import Request
from jaxvis.edge.supervise import summary

ROOT = Path(jaxvis.__file__).resolve().parent.parent
TINY = ['--model', 'tiny', '--size', '32', '--quiet']
ATLAS = ['atlas', *TINY, '--steps', '2', '--layers', 'block3_conv1,block4_conv1', '--filters', '0:8', '--chunk', '4',
         '--diverse', '0', '--examples', '0']  # 16 filters of the tiny model in 4 chunks
PEER_TIMEOUT = '6'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(args, pid: int, port: int, weights: Path, out: Path, n: int = 2, cache: Path | None = None):
    """One process of a run; ``cache``: a jaxvis cache folder whose compiled steps a rerun reuses."""
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JAXVIS_WEIGHTS': str(weights),
           'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
    env.update({'JAXVIS_COMPILE_CACHE': '1', 'JAXVIS_CACHE': str(cache)} if cache else {'JAXVIS_COMPILE_CACHE': '0'})
    cmd = [sys.executable, '-m', 'jaxvis', *args, '--out', str(out), '--coordinator', f'127.0.0.1:{port}',
           '--num-processes', str(n), '--process-id', str(pid), '--peer-timeout', PEER_TIMEOUT,
           '--join-timeout', '60']
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_pair(args, weights: Path, outs, timeout: float = 240, cache: Path | None = None):
    """Both processes of a run (``outs``: one folder, or one per process); ``[(rc, stderr)]``."""
    port = free_port()
    procs = [launch(args, i, port, weights, outs[i] if isinstance(outs, (list, tuple)) else outs, cache=cache)
             for i in range(2)]
    try:
        return [(p.wait(timeout=timeout), p.communicate()[1].decode()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def tree(folder: Path, skip=('index.html',)) -> dict[str, bytes]:
    """Every file under ``folder`` but the locks (and the index page, which names the devices used)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*'))
            if p.is_file() and not p.name.startswith(store.LOCK) and p.name not in skip}


def images(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(folder).items() if k.endswith(('.png', '.gif'))}


# --- pure pieces ------------------------------------------------------------------------------------------

def test_split_gives_each_process_a_block_in_proportion_to_its_devices():
    assert split(10, [2, 2]) == [(0, 6), (6, 10)]
    assert split(16, [2, 2]) == [(0, 8), (8, 16)]
    assert split(3, [1, 1, 1, 1]) == [(0, 1), (1, 2), (2, 3), (3, 3)]
    assert split(9, [1, 2]) == [(0, 3), (3, 9)]
    for n in range(0, 30):
        for counts in ([1], [2, 2], [1, 3], [4, 1, 2]):
            blocks = split(n, counts)
            assert [i for lo, hi in blocks for i in range(lo, hi)] == list(range(n))


def test_a_process_with_no_filters_has_empty_pictures():
    from jaxvis.display import to_uint8
    for method in ('seed', 'clip'):
        empty = to_uint8(np.zeros((0, 4, 5, 3), np.float32), method)
        assert empty.shape == (0, 4, 5, 3) and empty.dtype == np.uint8


def test_pack_round_trips_and_write_files_stays_inside(tmp_path):
    files = {'a.png': b'\x89PNG', 'img/x/1.gif': bytes(range(256)), 'chunks/c.json': b'{}', 'empty': b''}
    assert multi.unpack(multi.pack(files)) == files and multi.unpack(b'') == {}
    multi.write_files(str(tmp_path), files)
    assert (tmp_path / 'img' / 'x' / '1.gif').read_bytes() == bytes(range(256))
    with pytest.raises(jaxvis.JaxvisError, match='outside'):
        multi.write_files(str(tmp_path), {'../evil': b'x'})


def test_first_lock_holder_removes_what_a_killed_writer_left(tmp_path):
    """A SIGKILL during an atomic write leaves ``.<name>.<random>.part``; the next run's process 0 removes
    it (process i > 0, which may share the folder with a writer at work, does not)."""
    (tmp_path / 'img').mkdir()
    stale = [tmp_path / '.layer_a.html.x1.part', tmp_path / 'img' / '.3.png.y2.part']
    keep = [tmp_path / 'a.png', tmp_path / '.hidden']
    for p in stale + keep:
        p.write_bytes(b'x')
    with store.lock(str(tmp_path), f'{store.LOCK}.1'):
        assert all(p.exists() for p in stale)
    with store.lock(str(tmp_path)):
        assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)


REQ = Request('10.0.0.1:1234', 4, 0, 120, 60)
HEARTBEAT = (b'E1202 06:35:18.686391   18231 coordination_service.cc:1549] [15] Use error polling to propagate the '
             b'following error to all tasks: UNAVAILABLE: The following tasks are unhealthy (stopped sending '
             b'heartbeats):\n2\nThe tasks have crashed.\nF1202 06:35:18.687525   18242 client.h:80] Terminating '
             b'process because the JAX distributed service detected fatal errors.\n')
LEADER = (b'F1202 06:36:23.876967   18536 client.h:80] Terminating process because the JAX distributed service '
          b'detected fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service. Either '
          b'the leader task was preempted/died/restarted unexpectedly\n')
JOIN = (b'F1202 06:38:07.290891   18752 client.h:80] Terminating process because the JAX distributed service '
        b'detected fatal errors. absl::Status: DEADLINE_EXCEEDED: Deadline Exceeded\n\nRPC: '
        b'/xla.coordination.CoordinationService/RegisterTask\n')


def test_runtime_logs_become_one_line_naming_what_stopped():
    """The texts are the runtime's own (jax 0.10.2), recorded from real runs."""
    assert summary(HEARTBEAT, REQ) == 'process 2 of 4 stopped (no heartbeat for 60 s)'
    assert summary(LEADER, REQ) == 'process 0, the coordinator at 10.0.0.1:1234, stopped or cannot be reached'
    assert summary(JOIN, REQ) == 'not all 4 processes joined the run at 10.0.0.1:1234 within 120 s'


def test_flags_given_in_part_are_one_line(capsys):
    assert main(['filters', '--layer', 'block1_conv1', '--coordinator', '127.0.0.1:1', '--quiet']) == 2
    assert main(['filters', '--layer', 'block1_conv1', '--coordinator', 'nohost', '--num-processes', '2',
                 '--process-id', '0']) == 2
    assert main(['filters', '--layer', 'block1_conv1', '--coordinator', '127.0.0.1:5', '--num-processes', '2',
                 '--process-id', '2']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith('jaxvis: error: ') for line in err), err
    assert 'missing: --num-processes, --process-id' in err[0] and 'HOST:PORT' in err[1] and '0..1' in err[2]


# --- two processes ----------------------------------------------------------------------------------------

def test_a_small_vgg16_layer_in_a_folder_per_process_gives_the_bytes_of_one(tmp_path, vgg16_h5, tiny_h5):
    """Nothing shared: process 0 gets the manifest and the grid through JAX, each process keeps its own
    filters' images; together they are the single-process run's files."""
    vgg = ['filters', '--model', 'vgg16', '--size', '32', '--quiet', '--layer', 'block1_conv2', '--filters', '0:12',
           '--steps', '3', '--weights', str(vgg16_h5)]
    assert main([*vgg, '--out', str(tmp_path / 'vgg_one')]) == 0
    hosts = [tmp_path / 'vgg_p0', tmp_path / 'vgg_p1']
    res = run_pair(vgg, tiny_h5, hosts)
    assert all(rc == 0 for rc, _ in res), res
    single, p0, p1 = images(tmp_path / 'vgg_one'), images(hosts[0]), images(hosts[1])
    assert 'block1_conv2_grid.png' in p0 and 'block1_conv2_grid.png' not in p1
    assert {**p0, **p1} == single and not set(p0) & set(p1)
    assert len(p1) == 6  # filters 6..11: half of the global devices are process 1's
    assert (hosts[0] / 'manifest.json').exists() and not (hosts[1] / 'manifest.json').exists()


def test_killed_peer_ends_the_run_in_one_line_and_a_rerun_completes(tmp_path, tiny_h5, monkeypatch):
    """The atlas of 16 tiny-model filters in a shared folder: process 1 killed after the first chunk; process 0
    ends in one line; both again: the same bytes as one process with one device."""
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    out, port, cache = tmp_path / 'pair', free_port(), tmp_path / 'cache'
    procs = [launch(ATLAS, i, port, tiny_h5, out, cache=cache) for i in range(2)]
    try:
        deadline = time.monotonic() + 180
        while not list((out / 'chunks').glob('*.json')) and time.monotonic() < deadline:
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)  # the launcher: its worker dies with it
        t0, limit = time.monotonic(), 3 * int(PEER_TIMEOUT) + 30
        ended = {}
        watch = threading.Thread(target=lambda: ended.update(rc=procs[0].wait(), at=time.monotonic()), daemon=True)
        watch.start()
        # while process 0 waits out the peer timeout: the one-process run to compare with, in this process
        assert main([*ATLAS, '--out', str(tmp_path / 'whole')]) == 0
        watch.join(timeout=max(0.0, t0 + limit - time.monotonic()))
        assert 'rc' in ended, f'process 0 still runs {limit} s after its peer was killed'
        rc, waited = ended['rc'], ended['at'] - t0
        err = procs[0].communicate()[1].decode().strip().splitlines()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith('jaxvis: error: process 1 of 2 stopped') and waited < 3 * int(PEER_TIMEOUT) + 30
    res = run_pair(ATLAS, tiny_h5, out, cache=cache)  # the same command on both: continues from the finished chunks
    assert all(rc == 0 for rc, _ in res), res
    whole, pair = tree(tmp_path / 'whole'), tree(out)
    assert sorted(whole) == sorted(pair) and all(whole[k] == pair[k] for k in whole)


def test_processes_with_different_configs_are_refused(tmp_path, tiny_h5):
    args = ['filters', *TINY, '--layer', 'block1_conv1', '--filters', '0:2', '--steps', '1']
    port = free_port()
    procs = [launch(args + ['--seed', str(i)], i, port, tiny_h5, tmp_path / 'out') for i in range(2)]
    try:
        res = [(p.wait(timeout=120), p.communicate()[1].decode().strip().splitlines()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rc, err in res:
        assert rc == 2 and err == ['jaxvis: error: every process must run the same command: process 1 differs '
                                   'from process 0 in: seed'], err
    assert not list((tmp_path / 'out').glob('*.png'))


# --- the accelerator check, dry ---------------------------------------------------------------------------

def test_device_check_dry_run_writes_its_report(tmp_path):
    """``scripts/device_check.py --dry-run``: the GPU script's own code on the CPU at small sizes."""
    out = tmp_path / 'check.json'
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JAXVIS_COMPILE_CACHE': '0'}
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'device_check.py'), '--dry-run', '--out', str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    jobs = [r['job'] for r in report['rows']]
    assert report['dry_run'] and report['platform'] == 'cpu' and len(jobs) == 5
    assert jobs[0].startswith('seed job') and jobs[1] == 'seed job, bf16' and jobs[2] == 'lucid preset'
    assert all(r['seconds'] > 0 for r in report['rows'][:4]) and report['peak_memory_bytes'] > 0
    assert report['rows'][1]['dtype'] == 'bfloat16' and report['rows'][0]['filter_steps_per_s'] > 0
    check = report['rows'][4]
    assert check['passed'] and check['mean_abs_grey'] == 0.0  # CPU against CPU: the same bytes


def test_accelerator_batch_is_sized_from_free_memory():
    class Dev:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats
    gib = 2 ** 30
    assert memory.accelerator_batch(10 * 2 ** 20, 8, Dev({'bytes_limit': 64 * gib, 'bytes_in_use': 0})) == 408
    assert memory.accelerator_batch(10 * 2 ** 20, 8, Dev({'bytes_limit': 140 * gib, 'bytes_in_use': 0})) == 896
    assert memory.accelerator_batch(10 * 2 ** 20, 8, Dev({'bytes_limit': gib, 'bytes_in_use': gib // 2})) == 8
    assert memory.accelerator_batch(10 * 2 ** 20, 8, Dev({})) == 8  # nothing reported: the CPU width
    assert memory.accelerator_batch(1, 8, Dev({'bytes_limit': 140 * gib})) == 1024  # capped
