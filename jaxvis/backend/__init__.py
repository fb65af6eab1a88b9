"""Where jaxvis meets the hardware: XLA compiler options, the convolution plan, and the device mesh.

Nothing here knows about models or images: the engine asks for options and meshes, and a model that
has faster kernels (VGG's Winograd convolutions) asks :mod:`~jaxvis.backend.conv_plan` which to use.
"""
from jaxvis.backend import conv_plan, sharding, xla

__all__ = ['conv_plan', 'sharding', 'xla']
