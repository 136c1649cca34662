"""Locality for the layout tests: a timm convolutional tower (Gemma 3n's, FastVLM's) made to read each output
cell's own pixels only, so that the tokens a changed rectangle reaches are exactly the layout's.

No pixel margin would do instead: a token's receptive field is 392 px wide for a 32 px cell of Gemma 3n's 128 px
image (timm's test ConvNeXt: a 4 px stem, 2 px downsamplings, a 7 × 7 depthwise convolution a stage; only the
small random weights of its residual blocks keep the change beyond the cell under 1e-7 of the largest) and
1871 px for a 64 px cell of FastVLM's 256 px image (FastViT: 7 × 7 stride-2 downsamplings, 3 × 3 and 7 × 7
mixers): with only its attention and squeeze-excite taken out, a corner rectangle changes all 16 tokens.
"""
from __future__ import annotations

import re

import torch


def patchify_taps(convolution: torch.nn.Conv2d) -> None:
    """Zero every kernel tap but the ``stride × stride`` ones at ``padding``: output ``i`` then reads inputs
    ``stride·i .. stride·i + stride - 1`` only (a stride-1 convolution keeps its centre tap, a per-position
    channel map; a convolution whose kernel is its stride, a patch embedding, keeps every tap)."""
    (sy, sx), (py, px) = convolution.stride, convolution.padding
    assert convolution.dilation == (1, 1) and isinstance(convolution.padding, tuple), convolution
    keep = torch.zeros_like(convolution.weight, dtype=torch.bool)
    keep[..., py:py + sy, px:px + sx] = True
    convolution.weight.masked_fill_(~keep, 0.0)


def make_timm_tower_local(tower) -> None:
    """A timm tower (``TimmWrapperModel.timm_model``) made per cell of its last feature map: attention outputs
    zeroed, squeeze-excite gates (a global mean of the image) made constant 1, every convolution cut to the
    taps of :func:`patchify_taps`. Norms are per position (LayerNorm) or per channel (BatchNorm in eval)."""
    from timm.layers import SqueezeExcite
    from timm.models.fastvit import Attention

    with torch.no_grad():
        for name, module in list(tower.named_modules()):
            if isinstance(module, Attention):
                module.proj.weight.zero_()
                module.proj.bias.zero_()
            elif isinstance(module, SqueezeExcite):
                parent, _, child = name.rpartition(".")
                setattr(tower.get_submodule(parent), child, torch.nn.Identity())
            elif isinstance(module, torch.nn.Conv2d):
                patchify_taps(module)
            elif re.search(r"Attention(2d)?$", type(module).__name__):     # e.g. MobileNetV5's MobileAttention
                raise AssertionError(f"{name}: {type(module).__name__} is not made local")
