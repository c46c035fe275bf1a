"""Building blocks of the ECGFounder backbone (a RegNet-style 1-D CNN), written to match the released `Net1D`
op for op (see `../shared/fixtures/ecgfounder_parity/README.md`) while keeping `forward` free of Python-side shape
arithmetic where the geometry allows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(kernel_size: int, stride: int, length: int) -> tuple[int, int]:
    """TensorFlow "same" padding for a 1-D conv: output length `ceil(length / stride)`.

    .. math:: p = \\max(0, (\\lceil n/s \\rceil - 1) s + k - n), \\quad (p_{left}, p_{right}) = (\\lfloor p/2 \\rfloor, p - \\lfloor p/2 \\rfloor)
    """
    out = -(-length // stride)
    pad = max(0, (out - 1) * stride + kernel_size - length)
    return pad // 2, pad - pad // 2


def static_same_padding(kernel_size: int, stride: int) -> tuple[int, int] | None:
    """A (left, right) padding that gives "same" results for EVERY input length, or `None` if none exists.

    With `r = (-n) mod s`, TF pads `k - s + r` samples, `(k - s + r) // 2` on the left. When the left part does not
    depend on `r`, padding `(left, k - 1 - left)` and letting the strided conv drop the surplus on the right gives
    identical outputs; this holds for stride 1 and for the released stride-2 / even-kernel geometry.
    """
    left = (kernel_size - stride) // 2
    if all((kernel_size - stride + r) // 2 == left for r in range(stride)):
        return left, kernel_size - 1 - left
    return None


class SamePadConv1d(nn.Conv1d):
    """`nn.Conv1d` with TensorFlow-style "same" zero padding (asymmetric when needed), as in ECGFounder."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=True)
        self.static_padding = static_same_padding(kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pad = self.static_padding or same_padding(k, s, x.shape[-1])
        if pad != (0, 0):
            x = F.pad(x, pad)
        return super().forward(x)


class SqueezeExcitation(nn.Module):
    """Channel gate `h * sigmoid(fc2(swish(fc1(mean_t(h)))))` with reduction 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.silu(self.fc1(h.mean(dim=-1)))))
        return h * gate.unsqueeze(-1)


class Shortcut(nn.Module):
    """Identity path of a block: max-pool (k=2, s=2, one zero sample padded on the right) when downsampling,
    then zero channels split around the input when the width grows. Parameter-free."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        extra = out_channels - in_channels
        self.channel_pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = F.max_pool1d(F.pad(x, (0, 1)), kernel_size=2, stride=2)
        if self.channel_pad != (0, 0):
            x = F.pad(x, (0, 0, *self.channel_pad))
        return x


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck: [swish] -> 1x1 -> swish -> grouped k-conv (stride) -> swish -> 1x1 -> SE, plus
    the shortcut. The very first block of the network skips the leading activation, as released."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ratio: float,
        kernel_size: int,
        stride: int,
        groups_width: int,
        is_first_block: bool,
        use_se: bool = True,
        use_batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        middle = int(out_channels * ratio)
        self.is_first_block = is_first_block
        norm = (lambda c: nn.BatchNorm1d(c)) if use_batch_norm else (lambda c: nn.Identity())
        drop = (lambda: nn.Dropout(dropout)) if dropout > 0 else nn.Identity
        self.norm1, self.drop1 = norm(in_channels), drop()
        self.conv1 = nn.Conv1d(in_channels, middle, kernel_size=1)
        self.norm2, self.drop2 = norm(middle), drop()
        self.conv2 = SamePadConv1d(middle, middle, kernel_size, stride=stride, groups=middle // groups_width)
        self.norm3, self.drop3 = norm(middle), drop()
        self.conv3 = nn.Conv1d(middle, out_channels, kernel_size=1)
        self.se = SqueezeExcitation(out_channels) if use_se else nn.Identity()
        self.shortcut = Shortcut(in_channels, out_channels, downsample=stride != 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if not self.is_first_block:
            h = self.drop1(F.silu(self.norm1(h)))
        h = self.conv1(h)
        h = self.conv2(self.drop2(F.silu(self.norm2(h))))
        h = self.conv3(self.drop3(F.silu(self.norm3(h))))
        return self.se(h) + self.shortcut(x)


class Stage(nn.Module):
    """`num_blocks` bottleneck blocks; block 0 downsamples and changes the width."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, stride: int, first_stage: bool, **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            BottleneckBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                stride=stride if i == 0 else 1,
                is_first_block=first_stage and i == 0,
                **block_kwargs,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Stem(nn.Module):
    """Strided "same" conv from the leads to `base_filters` channels, then swish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, use_batch_norm: bool = False):
        super().__init__()
        self.conv = SamePadConv1d(in_channels, out_channels, kernel_size, stride=stride)
        self.norm = nn.BatchNorm1d(out_channels) if use_batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.conv(x)))
