"""scikit-learn's digits (1,797 8 × 8 images, 0–16) as 32 × 32 RGB (intensity / 16, bilinear,
R = G = B) with stroke masks, the input of ``load_classifier("tiny_vit_digits")``. Split: the
first :data:`TRAIN_SIZE` of a seeded ``torch.randperm(1797)`` train, the other 397 test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..postprocess import kernel_size_for
from .items import ClassificationDataset, Rows

#: Seed of the train/test permutation.
SPLIT_SEED = 0
#: Images in the training split (the rest, 397, are the test split).
TRAIN_SIZE = 1400
#: A pixel is stroke when its upsampled intensity (in [0, 1]) is above this.
STROKE_THRESHOLD = 0.5
#: FAME's blur for 32 px images: the paper's σ = 7.7 px at 224 px scaled by 32/224, kernel 7.
DIGITS_BLUR: dict[str, float | int] = {"sigma": 1.1, "kernel_size": kernel_size_for(1.1)}


@dataclass(frozen=True)
class DigitsData(Rows):
    """``images`` (N, 3, 32, 32) in [0, 1], ``labels`` (N,), bool ``strokes``, ``indices``."""

    images: Tensor
    labels: Tensor
    strokes: Tensor
    indices: Tensor

    @property
    def names(self) -> list[str]:
        """One label per image: ``"#<row> digit <label>"`` (row of ``load_digits()``)."""
        return [f"#{i} digit {y}" for i, y in zip(self.indices.tolist(), self.labels.tolist())]

    def dataset(self) -> ClassificationDataset:
        """The split as a :class:`~fame_utils.data.items.ClassificationDataset` named by
        :attr:`names` (the strokes are ``IoUMetric``'s masks)."""
        return ClassificationDataset(self.images, self.labels, names=self.names)


def load_digits_images(
    split: str = "test", *, limit: int | None = None, device: str | torch.device = "cpu"
) -> DigitsData:
    """The ``"test"`` (397 images) or ``"train"`` (1,400) split, its first ``limit`` images
    (None: all), on ``device``; ``ValueError`` for another split or ``limit`` < 1."""
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for the whole split), got {limit}")
    bunch = load_digits()
    order = torch.randperm(len(bunch.images), generator=torch.Generator().manual_seed(SPLIT_SEED))
    index = (order[:TRAIN_SIZE] if split == "train" else order[TRAIN_SIZE:])[:limit]
    raw = torch.as_tensor(bunch.images, dtype=torch.float32)[index] / 16.0  # (N, 8, 8)
    gray = F.interpolate(raw.unsqueeze(1), size=(32, 32), mode="bilinear", align_corners=False)
    gray = gray.clamp(0.0, 1.0).to(device)
    return DigitsData(
        images=gray.expand(-1, 3, -1, -1).contiguous(),
        labels=torch.as_tensor(bunch.target, dtype=torch.int64)[index].to(device),
        strokes=gray[:, 0] > STROKE_THRESHOLD,
        indices=index.clone().to(device),
    )
