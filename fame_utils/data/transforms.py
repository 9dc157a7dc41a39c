"""Image loading and the Resize + CenterCrop preprocessing, with boxes mapped the same way.

The classifiers take square crops: the shorter image side is resized to ``resize`` pixels
(bilinear with antialiasing, like ``torchvision.transforms.Resize(resize)`` on tensors) and
the centre ``crop`` × ``crop`` window is kept (``CenterCrop(crop)``). Bounding boxes must go
through exactly the same geometry, otherwise IoU numbers (paper Sec. 4.3, Table 2) are off
by the mapping error rather than by the explanation. Both the image transform
(:func:`resize_center_crop`) and the box mapping (:func:`map_boxes`) therefore read their
sizes, scales and offsets from ONE place, :func:`resize_crop_geometry`.

Coordinates are continuous pixel coordinates: pixel (row i, column j) covers
[j, j + 1) × [i, i + 1), so a box ``(x0, y0, x1, y1)`` has its top-left corner at
(x0, y0) and is exclusive at (x1, y1); the whole W × H image is ``(0, 0, W, H)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_images

__all__ = [
    "ResizeCropGeometry",
    "resize_crop_geometry",
    "load_image",
    "resize_center_crop",
    "map_boxes",
    "box_mask",
]

BoxConvention = Literal["aspect", "per_axis"]


@dataclass(frozen=True)
class ResizeCropGeometry:
    """Where the pixels of an ``orig_hw`` image go under Resize(shorter side) + CenterCrop.

    Attributes:
        orig_hw: (H, W) of the input image.
        resized_hw: (H', W') after resizing the shorter side to ``resize`` (the longer side
            is ``int(resize * long / short)``, truncated, as torchvision computes it).
        crop: side of the square centre crop.
        top, left: offsets of the crop window inside the resized image, in resized pixels
            (``int(round((H' - crop) / 2))``, Python's round-half-to-even, as torchvision).

    A point (x, y) of the input lands at ``(x * scale_x - left, y * scale_y - top)`` in the
    crop, with ``scale_x = W' / W`` and ``scale_y = H' / H`` (the two differ slightly
    because the longer side is truncated to an integer).
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop: int
    top: int
    left: int

    @property
    def scale_x(self) -> float:
        return self.resized_hw[1] / self.orig_hw[1]

    @property
    def scale_y(self) -> float:
        return self.resized_hw[0] / self.orig_hw[0]


def resize_crop_geometry(orig_hw: tuple[int, int], resize: int, crop: int) -> ResizeCropGeometry:
    """Compute the Resize(``resize``) + CenterCrop(``crop``) geometry for an (H, W) image.

    Args:
        orig_hw: (H, W) of the image, positive ints.
        resize: target length of the shorter side (e.g. 256, or 232 in the paper's protocol).
        crop: side of the square centre crop (e.g. 224); must be <= ``resize``.

    Raises:
        ValueError: non-positive sizes, or ``crop > resize`` (the crop would need padding).
    """
    h, w = (int(v) for v in orig_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"orig_hw must be two positive ints (H, W), got {orig_hw}")
    if int(resize) <= 0 or int(crop) <= 0:
        raise ValueError(f"resize and crop must be positive, got resize={resize}, crop={crop}")
    if crop > resize:
        raise ValueError(
            f"crop ({crop}) must not exceed resize ({resize}): the shorter side would need padding"
        )
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = int(resize), int(resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    return ResizeCropGeometry((h, w), (new_h, new_w), int(crop), top, left)


def load_image(path: str | Path) -> Tensor:
    """Read an image file as a float32 RGB tensor of shape (3, H, W) with values in [0, 1].

    The one image reader of every loader (ImageNet, the bundled objects, face crops).
    Gray (``L``, ``1``), gray + alpha, palette, RGBA, CMYK, YCbCr, … are converted with
    PIL's ``convert("RGB")``; alpha is dropped, not composited (as torchvision's image
    folder loader does). 16-bit gray PNGs (``I;16``/``I``) are scaled by 1/65535. EXIF
    orientation is ignored: pixels are returned in stored order, the order the bundled
    boxes and ImageNet's boxes refer to. The tensor is on the CPU.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a file that is truncated, damaged or not an image, or an image mode
            that cannot be mapped to [0, 1] RGB (e.g. 32-bit float); the message names
            the file.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        return _read_image(path)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"cannot read image file {path}: {e} (is it truncated or damaged? re-copy it)"
        ) from None


def _read_image(path: Path) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode.startswith("I;16") or im.mode == "I":
            arr = np.asarray(im, dtype=np.float64)
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise ValueError(f"{path}: integer image with values outside 0..65535")
            gray = torch.from_numpy(arr / 65535.0).float()
            return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
        if im.mode == "F":
            raise ValueError(f"{path}: 32-bit float images are not supported; save as 8/16-bit")
        rgb = im.convert("RGB")
        arr8 = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr8.copy()).permute(2, 0, 1).float().div_(255.0).contiguous()


def resize_center_crop(images: Tensor, resize: int = 256, crop: int = 224) -> Tensor:
    """Resize the shorter side to ``resize`` then take the centre ``crop`` × ``crop`` window.

    Bilinear interpolation with antialiasing (``align_corners=False``), i.e. what
    ``torchvision.transforms.Resize(resize)`` + ``CenterCrop(crop)`` do to tensors; the
    geometry comes from :func:`resize_crop_geometry`, so :func:`map_boxes` maps boxes
    consistently. Runs on the images' device.

    Args:
        images: float tensor (3, H, W) or (B, 3, H, W), values in [0, 1], any device.
        resize: target length of the shorter side.
        crop: side of the output.

    Returns:
        (3, crop, crop) or (B, crop, crop) — same rank as the input — float tensor in
        [0, 1] on the same device and dtype.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    single = images.ndim == 3
    batch = check_images(images.unsqueeze(0) if single else images)
    geo = resize_crop_geometry((batch.shape[-2], batch.shape[-1]), resize, crop)
    if geo.resized_hw != geo.orig_hw:
        batch = F.interpolate(
            batch, size=geo.resized_hw, mode="bilinear", align_corners=False, antialias=True
        )
    out = batch[..., geo.top : geo.top + geo.crop, geo.left : geo.left + geo.crop].clamp(0.0, 1.0)
    return out[0] if single else out


def _as_boxes(boxes: Tensor | np.ndarray | list, name: str = "boxes") -> Tensor:
    t = torch.as_tensor(boxes)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.ndim == 1 and t.numel() == 4:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((t[:, 2] < t[:, 0]).any() | (t[:, 3] < t[:, 1]).any()):
        raise ValueError(f"{name} must satisfy x0 <= x1 and y0 <= y1 (xyxy order)")
    return t


def map_boxes(
    boxes: Tensor | np.ndarray | list,
    orig_hw: tuple[int, int],
    resize: int = 256,
    crop: int = 224,
    convention: BoxConvention = "aspect",
) -> Tensor:
    """Map (x0, y0, x1, y1) boxes of an (H, W) image into the Resize + CenterCrop output.

    ``convention="aspect"`` (default) follows the image exactly as
    :func:`resize_center_crop` transforms it: x ↦ x·W'/W − left, y ↦ y·H'/H − top with
    the numbers of :func:`resize_crop_geometry`. ``convention="per_axis"`` reproduces the
    paper's reference code (used for its Table 2 numbers): each axis is scaled to
    ``resize`` as if the image were square, x ↦ x·resize/W − (resize − crop)/2, likewise
    for y — wrong for non-square images, kept to reproduce those numbers.

    Results are clipped to [0, crop]; a box entirely outside the crop becomes empty
    (zero width or height).

    Args:
        boxes: (N, 4) or (4,) in input-image pixels, xyxy, exclusive at (x1, y1).
        orig_hw: (H, W) of the input image.
        resize, crop: as for :func:`resize_center_crop`.
        convention: ``"aspect"`` or ``"per_axis"``.

    Returns:
        (N, 4) float tensor in crop pixels, on the boxes' device.
    """
    b = _as_boxes(boxes)
    geo = resize_crop_geometry(orig_hw, resize, crop)
    h, w = geo.orig_hw
    if convention == "aspect":
        sx, sy, ox, oy = geo.scale_x, geo.scale_y, float(geo.left), float(geo.top)
    elif convention == "per_axis":
        sx, sy = resize / w, resize / h
        ox = oy = (resize - crop) / 2.0
    else:
        raise ValueError(f"convention must be 'aspect' or 'per_axis', got {convention!r}")
    scale = b.new_tensor([sx, sy, sx, sy])
    offset = b.new_tensor([ox, oy, ox, oy])
    return (b * scale - offset).clamp(0.0, float(geo.crop))


def box_mask(boxes: Tensor | np.ndarray | list, size: int | tuple[int, int]) -> Tensor:
    """Boolean masks of the pixels whose centres lie inside each box.

    Pixel (i, j) has centre (j + 0.5, i + 0.5) and is inside ``(x0, y0, x1, y1)`` when
    x0 <= j + 0.5 < x1 and y0 <= i + 0.5 < y1 (half-open, matching exclusive x1, y1).

    Args:
        boxes: (N, 4) or (4,) xyxy boxes in pixels.
        size: side of a square mask, or (H, W).

    Returns:
        (N, H, W) bool tensor on the boxes' device.
    """
    b = _as_boxes(boxes)
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    cx = torch.arange(w, device=b.device, dtype=b.dtype) + 0.5
    cy = torch.arange(h, device=b.device, dtype=b.dtype) + 0.5
    in_x = (cx[None, :] >= b[:, 0:1]) & (cx[None, :] < b[:, 2:3])  # (N, W)
    in_y = (cy[None, :] >= b[:, 1:2]) & (cy[None, :] < b[:, 3:4])  # (N, H)
    return in_y[:, :, None] & in_x[:, None, :]
