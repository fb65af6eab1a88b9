"""fp32 and bf16 matmul and 3x3 convolution throughput in XLA:CPU, and in PyTorch in the same run.

    python scripts/bf16_matmul.py [--torch PYTHON] [--n 2048] [--repeats 5]

Prints GFLOP/s (best of ``--repeats``) for an ``[n, n] @ [n, n]`` matmul and for a VGG block4-shaped
convolution (batch 8, 16x16x512 -> 512, 3x3, 'SAME'), in float32 and in bfloat16 (bf16 inputs; XLA with
fp32 and with bf16 results). With ``--torch``, the same in that interpreter's PyTorch (a separate
virtualenv: nothing in jaxvis depends on torch), bf16 as plain bf16 tensors (what autocast runs). Also the
CPU's bf16 flags from /proc/cpuinfo (``avx512_bf16``: AVX-512 BF16 dot products; ``amx_bf16``: AMX tiles).

Then the same convolution written as dots, to see whether XLA's bf16 dot reaches a convolution: im2col
(the 9 shifted copies side by side, one ``[N*H*W, 9C] @ [9C, K]`` dot), 9 shifted dots summed, and
Winograd F(2x2, 3x3) and F(4x4, 3x3) with their 16 / 36 products as bf16 dots (transforms in fp32); each
with fp32 results, and its error relative to the fp32 convolution's largest value. The bf16 forms are
compiled with jaxvis's bf16 options (YNNPACK's dots, :func:`jaxvis.backend.xla.compiler_options`), the
fp32 ones with its fp32 options. These include the kernel's transform in every call; the engine's
prepared kernels do not (``jaxvis tune`` and ``scripts/conv_layers.py`` time that form).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

CONV_FLOPS = 2 * 8 * 16 * 16 * 512 * 512 * 9

TORCH = r'''
import json, sys, time, torch
n, repeats = int(sys.argv[1]), int(sys.argv[2])
def best(fn):
    fn(); ts = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts)
out = {}
for name, dt in (('float32', torch.float32), ('bfloat16', torch.bfloat16)):
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    out['matmul ' + name] = 2 * n ** 3 / best(lambda: a @ b) / 1e9
    x = torch.randn(8, 512, 16, 16).to(dt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3).to(dt).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out['conv ' + name] = 2 * 8 * 16 * 16 * 512 * 512 * 9 / best(lambda: torch.nn.functional.conv2d(x, w, padding=1)) / 1e9
print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), **out}))
'''


def best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def xla_rates(n: int, repeats: int) -> dict[str, float]:
    key = jax.random.key(0)
    a, b = jax.random.normal(key, (n, n)), jax.random.normal(jax.random.fold_in(key, 1), (n, n))
    x, w = conv_inputs(key)
    out = {}
    for name, dt, acc in (('float32', jnp.float32, jnp.float32), ('bfloat16 -> fp32', jnp.bfloat16, jnp.float32),
                          ('bfloat16', jnp.bfloat16, jnp.bfloat16)):
        mm = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=acc))
        ab = (a.astype(dt), b.astype(dt))
        out['matmul ' + name] = 2 * n ** 3 / best(lambda: mm(*ab), repeats) / 1e9
        cv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                                               preferred_element_type=acc))
        xw = (x.astype(dt), w.astype(dt))
        out['conv ' + name] = CONV_FLOPS / best(lambda: cv(*xw), repeats) / 1e9
    return out


def im2col(x, w, dt):
    n, h, wd, c = x.shape
    xp = jnp.pad(x.astype(dt), ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=-1)
    return jnp.einsum('nhwc,ck->nhwk', cols, w.astype(dt).reshape(9 * c, -1), preferred_element_type=jnp.float32)


def shifted_dots(x, w, dt):
    n, h, wd, c = x.shape
    xp, wt = jnp.pad(x.astype(dt), ((0, 0), (1, 1), (1, 1), (0, 0))), w.astype(dt)
    return sum(jnp.einsum('nhwc,ck->nhwk', xp[:, i:i + h, j:j + wd], wt[i, j], preferred_element_type=jnp.float32)
               for i in range(3) for j in range(3))


def bf16_product(d, u):
    """A Winograd product as a bf16 dot with fp32 results (the transforms around it stay fp32)."""
    return jnp.einsum('nhwc,ck->nhwk', d.astype(jnp.bfloat16), u.astype(jnp.bfloat16),
                      preferred_element_type=jnp.float32)


def conv_inputs(key, scale: float = 1.0):
    """The convolution measured: x ``[8, 16, 16, 512]``, w ``[3, 3, 512, 512]`` (CONV_FLOPS flops)."""
    return (jax.random.normal(key, (8, 16, 16, 512)),
            scale * jax.random.normal(jax.random.fold_in(key, 2), (3, 3, 512, 512)))


def as_dots(repeats: int) -> dict[str, float]:
    """GFLOP/s (direct-convolution flops) and error of the convolution written as dots, batch 8, 16x16x512."""
    from jaxvis.backend import xla
    from jaxvis.models import winograd as W
    x, w = conv_inputs(jax.random.key(0), 0.05)
    ref = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    out = {}
    for name, fn in (('im2col fp32', lambda x, w: im2col(x, w, jnp.float32)),
                     ('im2col bf16', lambda x, w: im2col(x, w, jnp.bfloat16)),
                     ('shifted dots fp32', lambda x, w: shifted_dots(x, w, jnp.float32)),
                     ('shifted dots bf16', lambda x, w: shifted_dots(x, w, jnp.bfloat16)),
                     ('winograd2 bf16 dots', lambda x, w: W._winograd(x, w, 2, product=bf16_product)),
                     ('winograd4 bf16 dots', lambda x, w: W._winograd(x, w, 4, product=bf16_product))):
        # jaxvis's options for the precision: bf16 keeps YNNPACK's dots (the AMX path), fp32 Eigen's
        jf = jax.jit(fn, compiler_options=xla.compiler_options('cpu', 'bfloat16' if 'bf16' in name else 'float32'))
        out['conv as ' + name] = CONV_FLOPS / best(lambda: jf(x, w), repeats) / 1e9
        out['error ' + name] = f'{float(jnp.max(jnp.abs(jf(x, w) - ref)) / jnp.max(jnp.abs(ref))):.1e}'
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--torch', default=None, help='a Python with torch installed (the peer)')
    ap.add_argument('--n', type=int, default=2048)
    ap.add_argument('--repeats', type=int, default=5)
    args = ap.parse_args(argv)
    flags = open('/proc/cpuinfo').read().split('flags')[1].split('\n')[0].split()
    model = next((ln.split(':', 1)[1].strip() for ln in open('/proc/cpuinfo') if ln.startswith('model name')), '?')
    print(f"CPU {model}; bf16 flags: {[f for f in ('avx512_bf16', 'amx_bf16', 'amx_tile') if f in flags]}; "
          f"jax {jax.__version__}", flush=True)
    rows = {'xla': {**xla_rates(args.n, args.repeats), **as_dots(args.repeats)}}
    if args.torch:
        got = subprocess.run([args.torch, '-c', TORCH, str(args.n), str(args.repeats)], capture_output=True,
                             text=True, check=True)
        rows['torch'] = json.loads(got.stdout)
    for peer, r in rows.items():
        for k, v in r.items():
            print(f'{peer:6s} {k:22s} ' + (f'{v:8.1f} GFLOP/s' if isinstance(v, float) else str(v)))
    print(json.dumps(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
