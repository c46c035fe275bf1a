"""A straightforward eager implementation of the released ECGFounder network (`Net1D`), kept as the baseline of
the speed benchmarks.

Written from `../assets/fixtures/ecgfounder_parity/README.md` in the style of the released `net1d.py`: every conv
(1x1 ones included) recomputes its TensorFlow "same" padding in Python on each call and pads with `F.pad`,
Swish is `x * sigmoid(x)`, the squeeze-excitation gate is applied with `einsum`, the shortcut pads and max-pools
per call and adds zero channels by transposing. It loads the same weights as `AnyECGModel` (our key names) via
`BaselineNet1D.from_anyecg(model)`, so both compute the same function and only the runtime differs.

Run `python benchmarks/baseline_net1d.py` to check it against the parity fixture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class MyConv1dPadSame(nn.Module):
    """Conv1d with "same" padding computed per call from the input length."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, groups=1):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

    def forward(self, x):
        in_dim = x.shape[-1]
        out_dim = (in_dim + self.stride - 1) // self.stride
        p = max(0, (out_dim - 1) * self.stride + self.kernel_size - in_dim)
        x = F.pad(x, (p // 2, p - p // 2), "constant", 0)
        return self.conv(x)


class MyMaxPool1dPadSame(nn.Module):
    """Max-pool (k=2, stride 2) after padding as the released code does (one zero on the right)."""

    def __init__(self, kernel_size):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, 1
        self.max_pool = nn.MaxPool1d(kernel_size=kernel_size)

    def forward(self, x):
        p = max(0, self.kernel_size - 1)
        x = F.pad(x, (p // 2, p - p // 2), "constant", 0)
        return self.max_pool(x)


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, ratio, kernel_size, stride, groups, downsample, is_first_block):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample, self.is_first_block = downsample, is_first_block
        self.stride = stride if downsample else 1
        mid = int(out_channels * ratio)
        self.activation1, self.activation2, self.activation3 = Swish(), Swish(), Swish()
        self.conv1 = MyConv1dPadSame(in_channels, mid, 1, 1)
        self.conv2 = MyConv1dPadSame(mid, mid, kernel_size, self.stride, groups=groups)
        self.conv3 = MyConv1dPadSame(mid, out_channels, 1, 1)
        self.se_fc1 = nn.Linear(out_channels, out_channels // 2)
        self.se_fc2 = nn.Linear(out_channels // 2, out_channels)
        self.se_activation = Swish()
        if downsample:
            self.max_pool = MyMaxPool1dPadSame(kernel_size=self.stride)

    def forward(self, x):
        identity = x
        out = x
        if not self.is_first_block:
            out = self.activation1(out)
        out = self.conv1(out)
        out = self.activation2(out)
        out = self.conv2(out)
        out = self.activation3(out)
        out = self.conv3(out)
        se = out.mean(-1)
        se = self.se_fc1(se)
        se = self.se_activation(se)
        se = self.se_fc2(se)
        se = torch.sigmoid(se)
        out = torch.einsum("abc,ab->abc", out, se)
        if self.downsample:
            identity = self.max_pool(identity)
        if self.out_channels != self.in_channels:
            identity = identity.transpose(-1, -2)
            ch1 = (self.out_channels - self.in_channels) // 2
            ch2 = self.out_channels - self.in_channels - ch1
            identity = F.pad(identity, (ch1, ch2), "constant", 0)
            identity = identity.transpose(-1, -2)
        out = out + identity
        return out


class BasicStage(nn.Module):
    def __init__(self, in_channels, out_channels, ratio, kernel_size, stride, groups_width, i_stage, m_blocks):
        super().__init__()
        self.block_list = nn.ModuleList()
        for i in range(m_blocks):
            first = i == 0
            self.block_list.append(
                BasicBlock(
                    in_channels if first else out_channels,
                    out_channels,
                    ratio,
                    kernel_size,
                    stride,
                    groups=out_channels // groups_width,
                    downsample=first,
                    is_first_block=i_stage == 0 and first,
                )
            )

    def forward(self, x):
        for block in self.block_list:
            x = block(x)
        return x


class BaselineNet1D(nn.Module):
    """The released `Net1D` backbone (BN and dropout off, as released), returning the pooled 1024-d features."""

    def __init__(self, in_channels=12, base_filters=64, ratio=1.0, filter_list=(64, 160, 160, 400, 400, 1024, 1024),
                 m_blocks_list=(2, 2, 2, 3, 3, 4, 4), kernel_size=16, stride=2, groups_width=16):
        super().__init__()
        self.first_conv = MyConv1dPadSame(in_channels, base_filters, kernel_size, stride)
        self.first_activation = Swish()
        self.stage_list = nn.ModuleList()
        in_c = base_filters
        for i, (out_c, m) in enumerate(zip(filter_list, m_blocks_list)):
            self.stage_list.append(BasicStage(in_c, out_c, ratio, kernel_size, stride, groups_width, i, m))
            in_c = out_c

    def forward(self, x):
        out = self.first_activation(self.first_conv(x))
        for stage in self.stage_list:
            out = stage(out)
        return out.mean(-1)

    @classmethod
    def from_anyecg(cls, model) -> "BaselineNet1D":
        """Build from an `AnyECGModel` (or a head holding one at `.anyecg`) and copy its weights."""
        backbone = getattr(model, "anyecg", model)
        c = backbone.config
        net = cls(c.in_channels, c.base_filters, c.ratio, c.filter_list, c.m_blocks_list, c.kernel_size, c.stride,
                  c.groups_width)
        state = {}
        for key, value in backbone.state_dict().items():
            key = key.replace("stem.conv.", "first_conv.conv.").replace("stages.", "stage_list.")
            key = key.replace(".blocks.", ".block_list.")
            for conv in ("conv1", "conv2", "conv3"):
                key = key.replace(f".{conv}.", f".{conv}.conv.")
            key = key.replace(".se.fc1.", ".se_fc1.").replace(".se.fc2.", ".se_fc2.")
            state[key] = value.detach().clone()
        net.load_state_dict(state, strict=True)
        return net.eval()


if __name__ == "__main__":
    import numpy as np

    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.testing import parity_dir, seeded_ecgfounder_state_dict, write_seeded_ecgfounder_checkpoint
    import tempfile, os

    with tempfile.TemporaryDirectory() as tmp:
        path = write_seeded_ecgfounder_checkpoint(os.path.join(tmp, "12_lead_ECGFounder.pth"))
        model = AnyECGForDiagnosis.from_ecgfounder(path)
    net = BaselineNet1D.from_anyecg(model)
    x = torch.from_numpy(np.load(parity_dir() / "inputs_12lead.npy"))
    with torch.no_grad():
        feats = net(x).numpy()
    err = np.abs(feats - np.load(parity_dir() / "features_12lead.npy")).max()
    print(f"baseline vs fixture features: max-abs {err:.2e}")
