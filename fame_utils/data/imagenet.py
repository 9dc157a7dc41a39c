"""ImageNet validation images with their first object's box (paper Sec. 4.3, Table 2).

The paper evaluates on 5000 validation images (5 per class in the text), taking the class
and the box of the **first object** of each image's annotation, preprocessed with
Resize(232) (shorter side) and CenterCrop(224). Which images: the authors' published list
(a CSV ``ImageId, PredictionString[, target]`` of 5000 rows drawn with replacement, so
some images appear twice) is loaded as it is, duplicates kept, with
``load_imagenet_val(root, protocol="imagenet.csv")``. Without a list, our own seeded draw
of ``per_class`` images per class (:func:`sample_per_class`) is used; it is *not* the
authors' list, so its numbers are comparable with the paper's only statistically.
ImageNet cannot be downloaded by this package; point :func:`load_imagenet_val` at a
local copy. The files it needs, and the layouts searched, are listed in
:mod:`fame_utils.data.imagenet_files`, which finds and reads them.

Boxes are used as given in the annotation files, ``(xmin, ymin, xmax, ymax)`` in
original-image pixels, and mapped through the same Resize + CenterCrop as the image by
:func:`fame_utils.data.transforms.map_boxes` — aspect-preserving by default, or the
paper's per-axis convention (``box_convention="per_axis"``) to reproduce its numbers.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .imagenet_files import (
    ImageNetRecord,
    find_imagenet_files,
    read_protocol_records,
    read_val_records,
)
from .items import ClassificationItem
from .transforms import BoxConvention, load_image, map_boxes, resize_center_crop

__all__ = ["ImageNetVal", "sample_per_class", "load_imagenet_val"]


def sample_per_class(
    records: Sequence[ImageNetRecord], per_class: int | None = 5, seed: int = 0
) -> list[ImageNetRecord]:
    """``per_class`` records of every class, drawn with ``random.Random(seed)`` from each
    class's records sorted by id (all of a class when it has fewer; ``None``: all).
    The result is ordered by (class, image id). This is our own draw: 5 per class gives
    5000 images as in the paper's text, but not the authors' list (load that with
    :func:`read_protocol_records` / ``load_imagenet_val(protocol=...)``)."""
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ValueError(f"per_class must be a whole number >= 1 or None, got {per_class!r}")
    by_class: dict[int, list[ImageNetRecord]] = {}
    for r in sorted(records, key=lambda r: r.image_id):
        by_class.setdefault(r.label, []).append(r)
    out = []
    rng = random.Random(seed)
    for label in sorted(by_class):
        group = by_class[label]
        if per_class is not None and len(group) > per_class:
            group = sorted(rng.sample(group, per_class), key=lambda r: r.image_id)
        out.extend(group)
    return out


class ImageNetVal(Sequence):
    """Lazily loaded validation items (:class:`~fame_utils.data.items.ClassificationItem`):
    ``image`` (3, crop, crop) in [0, 1], ``label``, ``box`` (4,) in crop pixels, ``name``
    = image id. ``identity`` names the selection and preprocessing for the runner's cache.
    """

    def __init__(
        self,
        records: Sequence[ImageNetRecord],
        *,
        resize: int = 232,
        crop: int = 224,
        box_convention: BoxConvention = "aspect",
    ):
        if box_convention not in ("aspect", "per_axis"):
            raise ValueError(
                f"box_convention must be 'aspect' or 'per_axis', got {box_convention!r}"
            )
        self.records = list(records)
        self.resize, self.crop, self.box_convention = int(resize), int(crop), box_convention
        h = hashlib.sha256(f"{self.resize}/{self.crop}/{box_convention}".encode())
        for r in self.records:
            h.update(f"{r.image_id},{r.label},{r.box}\n".encode())
        self.identity = f"imagenet-val:{len(self.records)}:{h.hexdigest()[:16]}"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        r = self.records[i]
        img = load_image(r.path)
        hw = (img.shape[1], img.shape[2])
        x0, y0, x1, y1 = r.box
        if x1 <= 0 or y1 <= 0 or x0 >= hw[1] or y0 >= hw[0] or x1 <= x0 or y1 <= y0:
            raise ValueError(
                f"{r.image_id} ({r.path}): box {list(r.box)} covers no pixel of the "
                f"{hw[1]}x{hw[0]} image; fix its annotation"
            )
        box = map_boxes(torch.tensor([r.box]), hw, self.resize, self.crop, self.box_convention)
        return ClassificationItem(
            image=resize_center_crop(img, self.resize, self.crop),
            label=r.label,
            box=box[0],
            name=r.image_id,
        )

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]


def load_imagenet_val(
    root: str | Path,
    *,
    per_class: int | None = 5,
    seed: int = 0,
    max_images: int | None = None,
    resize: int = 232,
    crop: int = 224,
    box_convention: BoxConvention = "aspect",
    images_dir: str | Path | None = None,
    annotations: str | Path | None = None,
    synset_mapping: str | Path | Sequence[str] | Mapping[str, int] | None = None,
    missing_images: str = "error",
    protocol: str | Path | None = None,
) -> ImageNetVal:
    """ImageNet validation items: first object's class and box, Resize(``resize``) +
    CenterCrop(``crop``), either from a fixed image list (``protocol``, e.g. the authors'
    ``imagenet.csv``, taken as it is, duplicates kept) or from our own seeded draw of
    ``per_class`` images per class (5 → 5000 images; not the authors' list).

    Args:
        root: local ImageNet folder (the files needed: :mod:`~fame_utils.data.imagenet_files`).
        per_class: images per class of our own draw (``None``: all annotated images);
            ignored with ``protocol``.
        seed: seed of our per-class draw; ignored with ``protocol``.
        max_images: keep only the first ``max_images`` items (of the list, or of the
            class-ordered draw).
        resize, crop: preprocessing (232/224 for torchvision's ResNet-50 V2 weights).
        box_convention: ``"aspect"`` (exact) or ``"per_axis"`` (the paper's code).
        images_dir, annotations, synset_mapping: explicit locations (default: searched).
        missing_images: ``"error"`` or ``"skip"`` annotated images without a file.
        protocol: a CSV image list ``ImageId, PredictionString[, target]`` whose rows are
            the items, in order, duplicates kept (boxes come from it, so ``annotations``
            is not needed).

    Raises:
        FileNotFoundError: a clear list of what is missing.
        ValueError: a bad row (reversed or NaN box, unknown synset), naming file and line.
    """
    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    ):
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
    mapping_file = synset_mapping if isinstance(synset_mapping, (str, Path)) else None
    if protocol is not None and annotations is None:
        annotations = protocol  # the list carries the boxes
    files = find_imagenet_files(
        root, images_dir=images_dir, annotations=annotations, synset_mapping=mapping_file
    )
    mapping = synset_mapping if mapping_file is None else None
    if protocol is not None:
        chosen = read_protocol_records(protocol, files, mapping, missing_images=missing_images)
    else:
        records = read_val_records(files, mapping, missing_images=missing_images)
        chosen = sample_per_class(records, per_class, seed)
    if max_images is not None:
        chosen = chosen[:max_images]
    return ImageNetVal(chosen, resize=resize, crop=crop, box_convention=box_convention)
