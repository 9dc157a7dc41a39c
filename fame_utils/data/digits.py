"""scikit-learn's handwritten digits as 32 × 32 RGB images with stroke masks.

The data set is scikit-learn's bundled copy of the UCI optical digits (``load_digits``:
1,797 images of 8 × 8 pixels, intensities 0–16, classes 0–9; it installs with the package,
no download). :func:`load_digits_images` makes them the input of the shipped
``load_classifier("tiny_vit_digits")``:

- **image**: intensity / 16 in [0, 1], upsampled 8 → 32 with bilinear interpolation
  (``align_corners=False``, values stay in [0, 1]), the same value in R, G and B: bright
  strokes on a black background.
- **split**: a fixed permutation ``torch.randperm(1797, generator=manual_seed(SPLIT_SEED))``;
  its first :data:`TRAIN_SIZE` (1,400) indices are the training split, the remaining 397 the
  test split (the split ``scripts/train_tiny_vit.py`` trained on).
- **stroke mask**: the pixels of the upsampled image whose intensity exceeds
  :data:`STROKE_THRESHOLD` (0.5, i.e. 8 of 16 grey levels): the ink of the digit, a natural
  "object" mask for IoU and ROAD-style numbers. On the test split it covers 30.8% of the
  pixels on average (19–42% per image; :func:`fame_utils.metrics.localization.mask_share` measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..postprocess import kernel_size_for

__all__ = [
    "DigitsData",
    "load_digits_images",
    "digits_split",
    "DIGITS_SIZE",
    "SPLIT_SEED",
    "TRAIN_SIZE",
    "STROKE_THRESHOLD",
    "DIGITS_BLUR",
]

#: Side of the upsampled images (pixels).
DIGITS_SIZE = 32
#: Seed of the train/test permutation.
SPLIT_SEED = 0
#: Images in the training split (the rest, 397, are the test split).
TRAIN_SIZE = 1400
#: A pixel is stroke when its upsampled intensity (in [0, 1]) is above this.
STROKE_THRESHOLD = 0.5
#: FAME's Gaussian blur for these 32 px images: the paper's σ = 7.7 px at 224 px scaled by
#: 32/224 (σ = 1.1 px), kernel 7 (:func:`~fame_utils.postprocess.kernel_size_for`: ±3σ, odd);
#: the paper's kernel 49 would span the whole image.
DIGITS_BLUR: dict[str, float | int] = {"sigma": 1.1, "kernel_size": kernel_size_for(1.1)}
_NUM_IMAGES = 1797


@dataclass(frozen=True)
class DigitsData:
    """One split of the digits.

    Attributes:
        images: (N, 3, 32, 32) float32 in [0, 1], RGB (three equal channels).
        labels: (N,) int64 digit classes 0–9.
        strokes: (N, 32, 32) bool stroke masks (intensity > :data:`STROKE_THRESHOLD`).
        indices: (N,) int64 rows of ``sklearn.datasets.load_digits()``.
    """

    images: Tensor
    labels: Tensor
    strokes: Tensor
    indices: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def names(self) -> list[str]:
        """One label per image: ``"#<row> digit <label>"`` (row of ``load_digits()``)."""
        return [f"#{i} digit {y}" for i, y in zip(self.indices.tolist(), self.labels.tolist())]

    def dataset(self):
        """The split as a :class:`~fame_utils.data.items.ClassificationDataset` (items named
        by :attr:`names`; its cache identity is a hash of the images and labels), to run
        :func:`fame_utils.experiment.run.run_experiment` on; the stroke masks go to
        :class:`fame_utils.metrics.adapters.IoUMetric`."""
        from .items import ClassificationDataset

        return ClassificationDataset(self.images, self.labels, names=self.names)

    def to(self, device: str | torch.device) -> DigitsData:
        """The same split with every tensor on ``device``."""
        return DigitsData(
            *(t.to(device) for t in (self.images, self.labels, self.strokes, self.indices))
        )


def digits_split(split: str) -> Tensor:
    """Row indices (int64, sorted by the permutation, not by value) of ``"train"`` or ``"test"``."""
    order = torch.randperm(_NUM_IMAGES, generator=torch.Generator().manual_seed(SPLIT_SEED))
    if split == "train":
        return order[:TRAIN_SIZE]
    if split == "test":
        return order[TRAIN_SIZE:]
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def load_digits_images(
    split: str = "test", *, limit: int | None = None, device: str | torch.device = "cpu"
) -> DigitsData:
    """The ``split`` of scikit-learn's digits as 32 × 32 RGB images with labels and stroke masks.

    Args:
        split: ``"test"`` (397 images, the default) or ``"train"`` (1,400).
        limit: keep the first ``limit`` images of the split (None: all); must be >= 1.
        device: where to put the tensors.

    Returns:
        :class:`DigitsData` (images (N, 3, 32, 32) in [0, 1]; labels (N,); strokes
        (N, 32, 32) bool; indices (N,)), built as the module docstring says.

    Raises:
        ValueError: unknown split, or ``limit`` < 1.
        ImportError: scikit-learn is not installed (it is a dependency of fame_utils).
    """
    from sklearn.datasets import load_digits

    index = digits_split(split)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 (or None for the whole split), got {limit}")
        index = index[:limit]
    bunch = load_digits()
    raw = torch.as_tensor(bunch.images, dtype=torch.float32)[index] / 16.0  # (N, 8, 8)
    gray = F.interpolate(
        raw.unsqueeze(1), size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False
    ).clamp(0.0, 1.0)
    data = DigitsData(
        images=gray.expand(-1, 3, -1, -1).contiguous(),
        labels=torch.as_tensor(bunch.target, dtype=torch.int64)[index],
        strokes=gray[:, 0] > STROKE_THRESHOLD,
        indices=index.clone(),
    )
    return data.to(device)
