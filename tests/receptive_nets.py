"""Hand-built networks whose true dependence on the input is known, shared by the
receptive-field tests (tracer, cell runner)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_positive(module: nn.Module) -> nn.Module:
    """All weights positive, so that with positive inputs every unit is on and the
    gradient support equals the theoretical receptive field."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    return module.eval()


def patchify_net() -> nn.Module:
    """Cell (i, j) provably depends only on its 8 × 8 patch: kernel = stride = 8, then 1 × 1."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 8, stride=8),
        nn.ReLU(),
        nn.Conv2d(6, 6, 1),
        nn.Tanh(),
        nn.Conv2d(6, 4, 1),
    ).eval()


def conv_stack() -> nn.Module:
    """3×3 s1 p1 → 3×3 s2 p1 → 3×3 s1 p1. By hand (r, j, first row range):
    conv1 r=3 j=1 [-1, 1]; conv2 r=5 j=2 [-2, 2]; conv3 r=9 j=2 [-4, 4], so output row o
    covers input rows 2o-4 .. 2o+4 (half-open [2o-4, 2o+5))."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
    )


class Residual(nn.Module):
    """main: 1×1 conv; shortcut: 5×5 conv (pad 2). The sum depends on the wider branch."""

    def __init__(self):
        super().__init__()
        self.main = nn.Conv2d(3, 4, 1)
        self.short = nn.Conv2d(3, 4, 5, padding=2)

    def forward(self, x):
        y = self.main(x)
        y += self.short(x)  # in-place add, as in torchvision's Bottleneck
        return torch.relu(y)


class TFSame(nn.Module):
    """TensorFlow "same" padding done in forward: 3×3 stride 2 on an even input pads
    (0, 1): output cell o covers input 2o .. 2o+2 (CAM would centre it at 2o + 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.pool = nn.AvgPool2d(2)  # (a max-pool's gradient reaches only the argmax)

    def forward(self, x):
        x = F.pad(x, (0, 1, 0, 1))
        return self.pool(self.conv(x))


def tiny_cnn() -> nn.Module:
    """A seeded 5-class CNN for 16 px inputs (conftest fixture and spawned test processes)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()
