"""Building blocks of the ECGFounder backbone (a RegNet-style 1-D CNN), written to match the released `Net1D`
op for op (see `tests/assets/fixtures/ecgfounder_parity/README.md`) and to run fast on CPU.

Runtime decisions (measured in `benchmarks/`, documented in `docs/speed.md`):

- Time-major memory. Every module takes and returns ordinary `(batch, channels, time)` tensors, but after the stem
  their memory is laid out time-major (`(batch, time, channels)` contiguous, i.e. strides `(T*C, 1, C)`). Each
  convolution runs as a 2-D oneDNN convolution on the `(batch, channels, 1, time)` channels-last view of that
  memory, which on AVX-512 CPUs is 1.5-3x faster than the channel-major path for the 1x1 convolutions (75% of
  the FLOPs) and the strided grouped ones. Element-wise ops keep the layout, so no transposes are paid in between.
- "Same" padding is precomputed in `__init__`: it is static for the released geometry (stride 1, or stride 2
  with an even kernel), so `forward` does no shape arithmetic. Symmetric padding and the stride-1 `(7, 8)` case
  are folded into the convolution's own padding; only the strided convolutions pad explicitly.
- Squeeze-excitation gate and residual sum are one `addcmul`; activations are `F.silu` (one kernel).

State-dict keys and parameter shapes are those of the original layer layout (`conv1.weight` of shape
`(out, in, 1)`, ...), so converted checkpoints load unchanged.
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


# torch >= 2.1 has torch.compiler; is_compiling / is_exporting came later
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)
_is_exporting = getattr(torch.compiler, "is_exporting", _is_compiling)

_FUSED_CONV_SILU = hasattr(torch.ops.mkldnn, "_convolution_pointwise") and torch.backends.mkldnn.is_available()


def fused_conv_silu_enabled(x: torch.Tensor) -> bool:
    """Whether a convolution followed by SiLU runs as ONE oneDNN primitive (`swish` post-op) on `x`.

    Only for float32 CPU inference (no autograd graph is recorded: the fused op has no backward), in eager mode
    (`torch.compile`, `torch.export` / ONNX export and `torch.jit.trace` see the plain `conv2d` + `silu`, which they
    fuse or export themselves), and only while `torch.backends.mkldnn.enabled`.
    """
    return (
        _FUSED_CONV_SILU
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.enabled
        and not torch.jit.is_tracing()
        and not _is_compiling()
    )


def time_major(x: torch.Tensor) -> torch.Tensor:
    """The same `(batch, channels, time)` values with time-major memory (a copy unless already so)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last).squeeze(2)


class SamePadConv1d(nn.Conv1d):
    """`nn.Conv1d` with TensorFlow-style "same" zero padding (asymmetric when needed), as in ECGFounder.

    Runs as a channels-last 2-D convolution (see the module docstring): the output is time-major whatever the input
    layout. The padding is resolved once here:

    - symmetric `(p, p)`: the convolution's own padding, no copy;
    - stride 1 with `(p, p + 1)` (even kernels): convolution padding `p + 1` and the first output column dropped,
      which equals padding `(p, p + 1)` because that column is the only one that sees the extra left zero;
    - otherwise, with a static padding: `F.pad` then an unpadded convolution;
    - geometries without a static padding (e.g. stride 3): computed per call from the input length.

    Args:
        in_channels, out_channels, kernel_size, stride, groups: as in `nn.Conv1d` (bias is always on).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=True)
        pad = static_same_padding(kernel_size, stride)
        self.static_padding = pad
        self.conv_padding, self.trim, self.explicit_padding = 0, 0, None
        if pad is not None:
            left, right = pad
            if left == right:
                self.conv_padding = left
            elif stride == 1 and right == left + 1:
                self.conv_padding, self.trim = right, 1
            else:
                self.explicit_padding = (left, right)

    def forward(self, x: torch.Tensor, silu: bool = False) -> torch.Tensor:
        """Convolve `x` (batch, channels, time); `silu=True` returns `silu(conv(x))`, fused into the convolution
        when `fused_conv_silu_enabled()` says so (inference on CPU)."""
        x = x.unsqueeze(2)
        if self.static_padding is None:
            x = F.pad(x, same_padding(self.kernel_size[0], self.stride[0], x.shape[-1]))
        elif self.explicit_padding is not None:
            x = F.pad(x, self.explicit_padding)
        if silu and fused_conv_silu_enabled(x):
            y = torch.ops.mkldnn._convolution_pointwise(
                x, self.weight.unsqueeze(2), self.bias, [0, self.conv_padding], [1, self.stride[0]], [1, 1],
                self.groups, "swish", [], "",
            )
        else:
            y = F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), (0, self.conv_padding), 1, self.groups)
            if silu:
                y = F.silu(y)
        if self.trim:
            y = y[..., self.trim :]
        return y.squeeze(2)


class SqueezeExcitation(nn.Module):
    """Channel gate `h * g` with `g = sigmoid(fc2(swish(fc1(mean_t(h)))))`, reduction 2.

    Args:
        channels: width `C` of `h`; `fc1: C -> C // 2`, `fc2: C // 2 -> C`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def gate(self, h: torch.Tensor) -> torch.Tensor:
        """The gate `g` of shape `(batch, channels, 1)`, ready to broadcast over time."""
        return torch.sigmoid(self.fc2(F.silu(self.fc1(h.mean(dim=-1))))).unsqueeze(-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.gate(h)


class Shortcut(nn.Module):
    """Identity path of a block: max-pool (k=2, s=2, one zero sample padded on the right) when downsampling,
    then zero channels split around the input when the width grows. Parameter-free.

    Args:
        in_channels, out_channels: widths before and after the block.
        downsample: whether the block halves the length (stride 2).
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        extra = out_channels - in_channels
        self.channel_pad = (0, 0, 0, 0, extra // 2, extra - extra // 2)
        self.is_identity = not downsample and extra == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return x
        return self.pad_channels(self.pool(x))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The time axis of the shortcut: max-pool when downsampling, else `x`."""
        if not self.downsample:
            return x
        x = x.unsqueeze(2)  # 4-D so that padding keeps the memory layout
        if torch.is_grad_enabled():  # max-pool's gradient goes to one element of a tie, as released
            x = F.max_pool2d(F.pad(x, (0, 1)), kernel_size=(1, 2), stride=(1, 2))
        elif not (_is_exporting() or torch.jit.is_tracing()) and x.shape[-1] % 2 == 0:
            # max of pairs (0,1), (2,3), ...: the padded zero is never used, so no copy (eager only: an exported
            # graph must serve odd lengths too, and testing the length first would make export guard on it)
            x = torch.maximum(x[..., 0::2], x[..., 1::2])
        else:  # odd length: the last sample pairs with the padded zero
            x = F.pad(x, (0, 1))
            x = torch.maximum(x[..., :-1:2], x[..., 1::2])
        return x.squeeze(2)

    def pad_channels(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_pad[-2:] == (0, 0):
            return x
        return F.pad(x.unsqueeze(2), self.channel_pad).squeeze(2)

    def add_to(self, x: torch.Tensor, h: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """`forward(x) + h * gate` without building the zero-padded shortcut when the width grows (inference): the
        pooled input is added in place to its channel slice of `h * gate`."""
        lo, hi = self.channel_pad[-2:]
        if self.is_identity or (lo, hi) == (0, 0) or torch.is_grad_enabled():
            return torch.addcmul(self.forward(x), h, gate)
        out = h * gate
        out[:, lo:out.shape[1] - hi].add_(self.pool(x))
        return out


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck: [swish] -> 1x1 -> swish -> grouped k-conv (stride) -> swish -> 1x1 -> SE, plus
    the shortcut. The very first block of the network skips the leading activation, as released.

    Args:
        in_channels, out_channels: block input and output widths.
        ratio: bottleneck expansion, middle width `int(out_channels * ratio)`.
        kernel_size, stride: of the grouped convolution (stride 2 downsamples).
        groups_width: channels per group of the grouped convolution.
        is_first_block: skip the leading activation (first block of the network).
        use_se: squeeze-excitation gate on the block output.
        use_batch_norm: BatchNorm before each activation (off in the released network).
        dropout: dropout before each convolution (off in the released network).
    """

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
        self.plain = not use_batch_norm and not dropout > 0  # released configuration: skip the Identity calls
        norm = (lambda c: nn.BatchNorm1d(c)) if use_batch_norm else (lambda c: nn.Identity())
        drop = (lambda: nn.Dropout(dropout)) if dropout > 0 else nn.Identity
        self.norm1, self.drop1 = norm(in_channels), drop()
        self.conv1 = SamePadConv1d(in_channels, middle, kernel_size=1)
        self.norm2, self.drop2 = norm(middle), drop()
        self.conv2 = SamePadConv1d(middle, middle, kernel_size, stride=stride, groups=middle // groups_width)
        self.norm3, self.drop3 = norm(middle), drop()
        self.conv3 = SamePadConv1d(middle, out_channels, kernel_size=1)
        self.se = SqueezeExcitation(out_channels) if use_se else None
        self.shortcut = Shortcut(in_channels, out_channels, downsample=stride != 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plain:
            h = x if self.is_first_block else F.silu(x)
            h = self.conv3(self.conv2(self.conv1(h, silu=True), silu=True))
        else:
            h = x if self.is_first_block else self.drop1(F.silu(self.norm1(x)))
            h = self.conv1(h)
            h = self.conv2(self.drop2(F.silu(self.norm2(h))))
            h = self.conv3(self.drop3(F.silu(self.norm3(h))))
        if self.se is None:
            return h + self.shortcut(x)
        return self.shortcut.add_to(x, h, self.se.gate(h))


CHANNEL_MAJOR_MIN_WIDTH = 1024  # stages at least this wide run channel-major (see `Stage`)


class Stage(nn.Module):
    """`num_blocks` bottleneck blocks; block 0 downsamples and changes the width.

    Args:
        in_channels, out_channels: stage input and output widths.
        num_blocks: number of blocks.
        stride: stride of block 0.
        first_stage: block 0 is the network's first block (no leading activation).
        block_kwargs: passed to `BottleneckBlock`.
    """

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
        # Wide stages have few time steps, where oneDNN's grouped convolutions are 2-3x faster channel-major.
        self.channel_major = out_channels >= CHANNEL_MAJOR_MIN_WIDTH

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_major and not _is_exporting():
            x = x.contiguous()
        for block in self.blocks:
            x = block(x)
        return x


class Stem(nn.Module):
    """Strided "same" conv from the leads to `base_filters` channels, then swish. Switches the memory to
    time-major (see the module docstring), whatever the layout of the input.

    Args:
        in_channels: number of leads.
        out_channels: `base_filters`.
        kernel_size, stride: of the stem convolution.
        use_batch_norm: BatchNorm before the activation (off in the released network).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, use_batch_norm: bool = False):
        super().__init__()
        self.conv = SamePadConv1d(in_channels, out_channels, kernel_size, stride=stride)
        self.norm = nn.BatchNorm1d(out_channels) if use_batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exported graphs (ONNX) carry no memory layout: skip the copy, which would also add stride guards.
        h = self.conv(x if _is_exporting() else time_major(x))
        return F.silu(h if self.norm is None else self.norm(h))


CACHE_BLOCK_SIZE = 16  # ECGs per chunk through the stem and the time-major stages (see `run_backbone`)


def run_backbone(
    stem: nn.Module, stages, x: torch.Tensor, cache_block_size: int = CACHE_BLOCK_SIZE, output_hidden_states: bool = False
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """Stem then stages, cache-blocked: the stem and the leading time-major stages (long sequences, small weights)
    run on chunks of `cache_block_size` ECGs, so that each chunk's activations stay in cache across the element-wise
    ops and convolutions; the chunks are concatenated before the channel-major stages (short sequences, large
    weights), which run on the whole batch. Per-ECG results are unchanged (every op is per sample).

    Args:
        stem: the `Stem`.
        stages: the `Stage` modules, in order.
        x: `(batch, leads, samples)` input.
        cache_block_size: chunk size; `0` (or a batch no larger than it) runs the whole batch at once. Also off
            under `torch.compile` / `torch.export` / tracing, which need one static graph.
        output_hidden_states: also return the stem output and every stage output.

    Returns:
        `(last stage output, hidden states or None)`.
    """
    blocked = 0
    # the mode test first: under torch.export a test of the symbolic batch size would become a guard on it
    if not (_is_compiling() or _is_exporting() or torch.jit.is_tracing()) and 0 < cache_block_size < x.shape[0]:
        while blocked < len(stages) and not stages[blocked].channel_major:
            blocked += 1
    if blocked:
        chunks = []
        for part in x.split(cache_block_size):
            h = stem(part)
            states = [h]
            for stage in stages[:blocked]:
                h = stage(h)
                states.append(h)
            chunks.append(states if output_hidden_states else [h])
        if output_hidden_states:
            all_hidden = tuple(_cat_like(list(col)) for col in zip(*chunks))
            hidden = all_hidden[-1]
        else:
            hidden, all_hidden = _cat_like([c[0] for c in chunks]), None
    else:
        hidden = stem(x)
        all_hidden = (hidden,) if output_hidden_states else None
    for stage in stages[blocked:]:
        hidden = stage(hidden)
        if output_hidden_states:
            all_hidden = all_hidden + (hidden,)
    return hidden, all_hidden


def _cat_like(parts: list[torch.Tensor]) -> torch.Tensor:
    """`torch.cat` along the batch that keeps the parts' (time-major) memory layout."""
    if parts[0].dim() == 3 and not parts[0].is_contiguous():
        return torch.cat([p.unsqueeze(2) for p in parts]).squeeze(2)  # 4-D cat preserves channels-last
    return torch.cat(parts)
