"""Shared test fixtures: tiny deterministic models with known gradients."""

from __future__ import annotations

import pytest
import receptive_nets
import torch
from torch import nn


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


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
