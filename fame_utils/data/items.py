"""Items, batches and in-memory datasets of the two tasks the experiments run.

- Classification (paper Table 2): :class:`ClassificationItem` (image, class, box),
  stacked into a :class:`ClassificationBatch`; :class:`ClassificationDataset` wraps tensors.
- Verification (paper Table 1): :class:`PairItem` (gallery, probe, genuine), stacked into
  a :class:`PairBatch`; :class:`PairDataset` wraps tensors.

A dataset is any sequence of items of one kind (:mod:`fame_utils.data.imagenet` loads
lazily). It may carry an ``identity`` string naming its content for the experiment cache;
:func:`dataset_identity` otherwise hashes the items.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_images

__all__ = [
    "Task",
    "ClassificationItem",
    "PairItem",
    "ClassificationBatch",
    "PairBatch",
    "ClassificationDataset",
    "PairDataset",
    "task_of",
    "collate",
    "hash_tensor",
    "from_object_samples",
    "from_face_pairs",
    "dataset_identity",
]

Task = Literal["classification", "verification"]
"""``"classification"`` (:class:`ClassificationItem` data) or ``"verification"`` (pairs)."""


@dataclass
class ClassificationItem:
    """One image to explain for its class.

    Attributes:
        image: (3, H, W) float RGB in [0, 1].
        label: ground-truth class index (the explained class).
        box: (4,) ``(x0, y0, x1, y1)`` object box in the image's pixel coordinates
            (after preprocessing), or ``None``.
        name: a unique identifier (file name).
    """

    image: Tensor
    label: int
    box: Tensor | None = None
    name: str = ""


@dataclass
class PairItem:
    """One verification pair: the probe is explained against the frozen gallery embedding.

    Attributes:
        gallery, probe: (3, H, W) float RGB in [0, 1] face crops.
        genuine: same identity.
        name: a unique identifier.
    """

    gallery: Tensor
    probe: Tensor
    genuine: bool
    name: str = ""


@dataclass
class ClassificationBatch:
    """``images`` (B, 3, H, W), ``labels`` (B,) long, ``boxes`` (B, 4) or ``None``,
    ``names``, ``indices`` (positions in the dataset)."""

    images: Tensor
    labels: Tensor
    boxes: Tensor | None
    names: list[str]
    indices: list[int]

    def to(self, device) -> ClassificationBatch:
        return dataclasses.replace(
            self,
            images=self.images.to(device),
            labels=self.labels.to(device),
            boxes=None if self.boxes is None else self.boxes.to(device),
        )


@dataclass
class PairBatch:
    """``gallery``, ``probe`` (B, 3, H, W), ``genuine`` (B,) bool, ``names``, ``indices``."""

    gallery: Tensor
    probe: Tensor
    genuine: Tensor
    names: list[str]
    indices: list[int]

    def to(self, device) -> PairBatch:
        return dataclasses.replace(
            self,
            gallery=self.gallery.to(device),
            probe=self.probe.to(device),
            genuine=self.genuine.to(device),
        )


def task_of(item: object) -> Task:
    """The task an item belongs to; ``TypeError`` for anything but the two item types."""
    if isinstance(item, ClassificationItem):
        return "classification"
    if isinstance(item, PairItem):
        return "verification"
    raise TypeError(
        "dataset items must be fame_utils.data.items.ClassificationItem or PairItem, got "
        f"{type(item).__name__}"
    )


def collate(items: Sequence[ClassificationItem | PairItem], indices: Sequence[int]):
    """Stack items of one kind into a :class:`ClassificationBatch` or :class:`PairBatch`."""
    task = task_of(items[0])
    names = [it.name or str(i) for it, i in zip(items, indices)]
    if task == "classification":
        boxes = None
        if all(it.box is not None for it in items):
            boxes = torch.stack([torch.as_tensor(it.box, dtype=torch.float32) for it in items])
        return ClassificationBatch(
            images=torch.stack([it.image for it in items]),
            labels=torch.tensor([int(it.label) for it in items], dtype=torch.long),
            boxes=boxes,
            names=names,
            indices=list(indices),
        )
    return PairBatch(
        gallery=torch.stack([it.gallery for it in items]),
        probe=torch.stack([it.probe for it in items]),
        genuine=torch.tensor([bool(it.genuine) for it in items]),
        names=names,
        indices=list(indices),
    )


def hash_tensor(h: Any, t: Tensor) -> None:
    """Feed a tensor's shape, dtype and bytes (on the CPU) into the hash object ``h``."""
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


class ClassificationDataset(Sequence):
    """In-memory classification items from tensors.

    Args:
        images: (N, 3, H, W) float [0, 1].
        labels: (N,) class indices.
        boxes: (N, 4) ``(x0, y0, x1, y1)`` in pixel coordinates, or ``None``.
        names: N unique names (default ``"0"``, ``"1"``, …).
        identity: string identifying the data for the cache; default: a hash of the content.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Sequence[int] | Tensor,
        boxes: Tensor | Sequence[Sequence[float]] | None = None,
        names: Sequence[str] | None = None,
        identity: str | None = None,
    ):
        check_images(images)
        n = images.shape[0]
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        self.boxes = None if boxes is None else torch.as_tensor(boxes, dtype=torch.float32)
        self.names = [str(i) for i in range(n)] if names is None else [str(s) for s in names]
        if self.labels.numel() != n or len(self.names) != n:
            raise ValueError(
                f"{n} images but {self.labels.numel()} labels and {len(self.names)} names"
            )
        if self.boxes is not None and tuple(self.boxes.shape) != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {tuple(self.boxes.shape)}")
        if len(set(self.names)) != n:
            raise ValueError("names must be unique")
        if identity is None:
            h = hashlib.sha256(b"classification")
            for t in (self.images, self.labels) + (() if self.boxes is None else (self.boxes,)):
                hash_tensor(h, t)
            h.update("\n".join(self.names).encode())
            identity = "tensors:" + h.hexdigest()[:16]
        self.identity = identity

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return ClassificationItem(
            image=self.images[i],
            label=int(self.labels[i]),
            box=None if self.boxes is None else self.boxes[i],
            name=self.names[i],
        )


class PairDataset(Sequence):
    """In-memory verification pairs from tensors.

    Args:
        gallery, probe: (N, 3, H, W) float [0, 1].
        genuine: (N,) bool / 0-1.
        names: N unique names (default ``"0"``, ``"1"``, …).
        identity: string identifying the data for the cache; default: a hash of the content.
    """

    def __init__(
        self,
        gallery: Tensor,
        probe: Tensor,
        genuine: Sequence[bool] | Tensor,
        names: Sequence[str] | None = None,
        identity: str | None = None,
    ):
        check_images(gallery, "gallery")
        check_images(probe, "probe")
        n = probe.shape[0]
        if gallery.shape != probe.shape:
            raise ValueError(
                f"gallery {tuple(gallery.shape)} and probe {tuple(probe.shape)} differ"
            )
        self.gallery, self.probe = gallery, probe
        self.genuine = torch.as_tensor(genuine).reshape(-1).bool()
        self.names = [str(i) for i in range(n)] if names is None else [str(s) for s in names]
        if self.genuine.numel() != n or len(self.names) != n:
            raise ValueError(
                f"{n} pairs but {self.genuine.numel()} labels, {len(self.names)} names"
            )
        if len(set(self.names)) != n:
            raise ValueError("names must be unique")
        if identity is None:
            h = hashlib.sha256(b"pairs")
            for t in (gallery, probe, self.genuine):
                hash_tensor(h, t)
            h.update("\n".join(self.names).encode())
            identity = "tensors:" + h.hexdigest()[:16]
        self.identity = identity

    def __len__(self) -> int:
        return self.probe.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return PairItem(self.gallery[i], self.probe[i], bool(self.genuine[i]), self.names[i])


def from_object_samples(samples: Any, identity: str | None = None) -> ClassificationDataset:
    """A :class:`ClassificationDataset` from :class:`fame_utils.data.objects.ObjectSamples`
    (images, labels, boxes in crop pixels, names)."""
    return ClassificationDataset(
        samples.images, samples.labels, samples.boxes, list(samples.names), identity
    )


def from_face_pairs(pairs: Any, identity: str | None = None) -> PairDataset:
    """A :class:`PairDataset` from :class:`fame_utils.data.faces.FacePairs`; item names are
    ``"<row> <gallery file> | <probe file>"``."""
    names = [
        f"{i:04d} {g} | {p}" for i, (g, p) in enumerate(zip(pairs.gallery_files, pairs.probe_files))
    ]
    return PairDataset(pairs.gallery, pairs.probe, pairs.genuine, names, identity)


def dataset_identity(dataset: Sequence) -> str:
    """``dataset.identity`` when present, else a hash of every item's content."""
    ident = getattr(dataset, "identity", None)
    if ident is not None:
        return str(ident)
    h = hashlib.sha256(b"items")
    for i in range(len(dataset)):
        it = dataset[i]
        h.update(type(it).__name__.encode())
        for f in dataclasses.fields(it):
            v = getattr(it, f.name)
            if isinstance(v, Tensor):
                hash_tensor(h, v)
            else:
                h.update(repr(v).encode())
    return "items:" + h.hexdigest()[:16]
