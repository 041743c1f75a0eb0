"""``run.patch_embed``: the ViT patch embedding as a reshape + matmul instead of a convolution.

open_clip's ``VisionTransformer.conv1`` has stride == kernel size and no bias (no padding,
dilation 1, one group), so each output pixel is one patch's dot product with each filter: the
same arithmetic as cutting the image into patches by reshape and multiplying by the flattened
weight.  Convolution kernels handle this shape poorly (a single 3-channel input with a 32x32
kernel); a GEMM does not.  The swap changes only the module's class (its ``forward``): the
parameters, their names and the ``state_dict`` stay those of the convolution, so checkpoints
are unaffected and ``deepcopy``/``torch.compile`` see an ordinary module.  Sums run in another
order, so results agree with the convolution to rounding, not bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

SETTINGS = ("conv", "matmul")


class MatmulPatchEmbed(nn.Conv2d):
    """A non-overlapping ``nn.Conv2d`` computed as patches @ weight^T (same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        b, c, h, w = x.shape
        gh, gw = h // k, w // k
        x = x[:, :, :gh * k, :gw * k]      # a strided conv drops the remainder too
        patches = x.reshape(b, c, gh, k, gw, k).permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, c * k * k)
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)
        # (B, out, gh, gw) as a view: open_clip's reshape + permute to tokens is then a free view too
        return out.reshape(b, gh, gw, self.out_channels).permute(0, 3, 1, 2)


def exact_as_matmul(conv: nn.Module) -> bool:
    """Whether ``conv`` is a patch embedding the matmul form reproduces."""
    return (type(conv) in (nn.Conv2d, MatmulPatchEmbed) and conv.kernel_size[0] == conv.kernel_size[1]
            and tuple(conv.stride) == tuple(conv.kernel_size) and tuple(conv.padding) == (0, 0)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def apply(visual: nn.Module, setting: str) -> nn.Module:
    """Set ``visual.conv1`` to ``setting`` (conv | matmul) in place; returns ``visual``."""
    if setting not in SETTINGS:
        raise ConfigError(f"run.patch_embed: unknown value {setting!r}; allowed: {', '.join(SETTINGS)}")
    conv = getattr(visual, "conv1", None)
    if conv is None or not exact_as_matmul(conv):
        if setting == "conv":
            return visual
        raise ConfigError("run.patch_embed: matmul needs a ViT image tower whose conv1 has stride == kernel size, "
                          "no padding and one group")
    conv.__class__ = MatmulPatchEmbed if setting == "matmul" else nn.Conv2d
    return visual
