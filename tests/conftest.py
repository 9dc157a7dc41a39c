"""Shared test fixtures: tiny deterministic models with known gradients."""

from __future__ import annotations

import pytest
import receptive_nets
import torch
from torch import nn

from fame_utils.data.items import ClassificationDataset


class LinearScorer(nn.Module):
    """logits = W · flatten(x): the input gradient of logit o is exactly W[o]."""

    def __init__(self, weight: torch.Tensor, normalization=None):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())  # (classes, 3, H, W)
        if normalization is not None:
            self.input_normalization = normalization

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.weight)


@pytest.fixture
def tiny_cnn():
    return receptive_nets.tiny_cnn()


@pytest.fixture
def data():
    """Five seeded 16×16 images with labels 0-4 and one box each (runner tests)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 16, 16, generator=g)
    boxes = torch.tensor([[2.0, 3.0, 12.0, 11.0]] * 5)
    return ClassificationDataset(images, [0, 1, 2, 3, 4], boxes=boxes)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
