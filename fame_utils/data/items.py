"""Items, batches and in-memory datasets of classification (Table 2) and verification
(Table 1): a dataset is any sequence of items of one kind, with an optional cache ``identity``."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .._checks import check_images

Task = Literal["classification", "verification"]


class Rows:
    """Mixin of the dataclasses whose tensor and list fields hold one row per sample."""

    def __len__(self) -> int:
        return len(getattr(self, dataclasses.fields(self)[0].name))

    def subset(self, index: int | slice | Sequence[int] | Sequence[bool] | Tensor | np.ndarray):
        """The rows ``index`` (int, slice, ints or bool mask; list, array or tensor) selects."""
        index = index.cpu() if isinstance(index, Tensor) else index
        idx = torch.arange(len(self))[index].reshape(-1)
        rows = idx.tolist()

        def pick(v: Any) -> Any:
            if isinstance(v, Tensor):
                return v[idx.to(v.device)]
            return [v[i] for i in rows] if isinstance(v, list) else v

        return dataclasses.replace(self, **{k: pick(v) for k, v in vars(self).items()})

    def to(self, device: torch.device | str):
        """The same rows with every tensor field on ``device``."""
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, Tensor)}
        return dataclasses.replace(self, **moved)


@dataclass
class ClassificationItem:
    """``image`` (3, H, W) RGB in [0, 1], ``label``, ``box`` (4,) xyxy pixels or None, ``name``."""

    image: Tensor
    label: int
    box: Tensor | None = None
    name: str = ""


@dataclass
class PairItem:
    """``gallery``, ``probe`` (3, H, W) float RGB in [0, 1], ``genuine``, a unique ``name``."""

    gallery: Tensor
    probe: Tensor
    genuine: bool
    name: str = ""


@dataclass
class ClassificationBatch(Rows):
    """``images`` (B, 3, H, W), ``labels`` (B,), ``boxes`` (B, 4) or None, names, indices."""

    images: Tensor
    labels: Tensor
    boxes: Tensor | None
    names: list[str]
    indices: list[int]


@dataclass
class PairBatch(Rows):
    """``gallery``, ``probe`` (B, 3, H, W), ``genuine`` (B,) bool, ``names``, ``indices``."""

    gallery: Tensor
    probe: Tensor
    genuine: Tensor
    names: list[str]
    indices: list[int]


def task_of(item: object) -> Task:
    """The task of ``item``; ``TypeError`` for anything but the two item types."""
    if isinstance(item, ClassificationItem):
        return "classification"
    if isinstance(item, PairItem):
        return "verification"
    raise TypeError(
        f"dataset items must be a ClassificationItem or PairItem, got {type(item).__name__}"
    )


def collate(items: Sequence[ClassificationItem | PairItem], indices: Sequence[int]):
    """Items of one kind stacked into a :class:`ClassificationBatch` or :class:`PairBatch`."""
    names = [it.name or str(i) for it, i in zip(items, indices)]
    if task_of(items[0]) == "classification":
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
    """Feed a tensor's shape, dtype and bytes into the hash object ``h``."""
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _finish(data: Any, kind: bytes, n: int, rows: dict[str, Tensor]) -> None:
    """Check ``rows`` and unique ``data.names`` (default "0", "1", …) have ``n`` rows; default
    ``data.identity``: a hash of ``kind``, the tensors and names."""
    names = [str(i) for i in range(n)] if data.names is None else [str(s) for s in data.names]
    if len(set(names)) != len(names):
        raise ValueError("names must be unique")
    sizes = {k: len(v) for k, v in rows.items() if v is not None} | {"names": len(names)}
    if set(sizes.values()) != {n}:
        raise ValueError(f"{n} rows of images but {sizes}; give one per image")
    data.names = names
    if data.identity is None:
        h = hashlib.sha256(kind)
        for t in rows.values():
            if t is not None:
                hash_tensor(h, t)
        h.update("\n".join(names).encode())
        data.identity = "tensors:" + h.hexdigest()[:16]


@dataclass(eq=False)
class ClassificationDataset(Rows):
    """Classification items from ``images`` (N, 3, H, W) float [0, 1], ``labels`` (N,),
    ``boxes`` (N, 4) xyxy pixels or ``None``, N unique ``names``, the cache ``identity``."""

    images: Tensor
    labels: Tensor | Sequence[int]
    boxes: Tensor | Sequence[Sequence[float]] | None = None
    names: list[str] | None = None
    identity: str | None = None

    def __post_init__(self) -> None:
        n = check_images(self.images).shape[0]
        self.labels = torch.as_tensor(self.labels, dtype=torch.long).reshape(-1)
        if self.boxes is not None:
            self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32)
            if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
                raise ValueError(f"boxes must have shape ({n}, 4), got {tuple(self.boxes.shape)}")
        rows = {"images": self.images, "labels": self.labels, "boxes": self.boxes}
        _finish(self, b"classification", n, rows)

    def __getitem__(self, i: int) -> ClassificationItem:
        box = None if self.boxes is None else self.boxes[i]
        return ClassificationItem(self.images[i], int(self.labels[i]), box, self.names[i])


@dataclass(eq=False)
class PairDataset(Rows):
    """Pairs from ``gallery``, ``probe`` (N, 3, H, W), ``genuine`` (N,), names, identity."""

    gallery: Tensor
    probe: Tensor
    genuine: Tensor | Sequence[bool]
    names: list[str] | None = None
    identity: str | None = None

    def __post_init__(self) -> None:
        check_images(self.gallery, "gallery")
        n = check_images(self.probe, "probe").shape[0]
        if self.gallery.shape != self.probe.shape:
            raise ValueError(
                f"gallery {tuple(self.gallery.shape)} and probe {tuple(self.probe.shape)} differ"
            )
        self.genuine = torch.as_tensor(self.genuine).reshape(-1).bool()
        rows = {"gallery": self.gallery, "probe": self.probe, "genuine": self.genuine}
        _finish(self, b"pairs", n, rows)

    def __getitem__(self, i: int) -> PairItem:
        return PairItem(self.gallery[i], self.probe[i], bool(self.genuine[i]), self.names[i])


def from_object_samples(samples: Any, identity: str | None = None) -> ClassificationDataset:
    """A :class:`ClassificationDataset` of ``ObjectSamples``."""
    return ClassificationDataset(
        samples.images, samples.labels, samples.boxes, list(samples.names), identity
    )


def from_face_pairs(pairs: Any, identity: str | None = None) -> PairDataset:
    """A :class:`PairDataset` of ``FacePairs``, named ``"<row> <gallery file> | <probe file>"``."""
    names = [
        f"{i:04d} {g} | {p}" for i, (g, p) in enumerate(zip(pairs.gallery_files, pairs.probe_files))
    ]
    return PairDataset(pairs.gallery, pairs.probe, pairs.genuine, names, identity)


def dataset_identity(dataset: Sequence) -> str:
    """``dataset.identity``, else that of the in-memory dataset of its items (a content hash)."""
    if getattr(dataset, "identity", None) is not None:
        return str(dataset.identity)
    b = collate([dataset[i] for i in range(len(dataset))], range(len(dataset)))
    if isinstance(b, PairBatch):
        return PairDataset(b.gallery, b.probe, b.genuine, b.names).identity
    return ClassificationDataset(b.images, b.labels, b.boxes, b.names).identity
