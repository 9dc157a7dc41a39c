"""Image loading and torchvision's Resize + CenterCrop of images and xyxy pixel boxes alike
(paper Sec. 4.3, Table 2); pixel (row i, column j) covers [j, j + 1) × [i, i + 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

BoxConvention = Literal["aspect", "per_axis"]


def load_image(path: str | Path) -> Tensor:
    """An image file as float32 RGB (3, H, W) in [0, 1] on the CPU (alpha dropped, 16-bit
    gray / 65535, EXIF orientation ignored); ``ValueError`` naming a damaged file."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "F":
                raise ValueError(f"{path}: 32-bit float images are not supported; save as 8/16-bit")
            if im.mode.startswith("I"):
                gray = torch.from_numpy(np.asarray(im, dtype=np.float64) / 65535.0)
                return gray.float().expand(3, -1, -1).contiguous()
            rgb = np.array(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"cannot read image file {path}: {e} (is it truncated or damaged? re-copy it)"
        ) from None
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0).contiguous()


def resize_crop(
    images: Tensor,
    boxes: Tensor | np.ndarray | list,
    resize: int = 256,
    crop: int = 224,
    convention: BoxConvention = "aspect",
) -> tuple[Tensor, Tensor]:
    """torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` of (3, H, W) or (B, 3, H, W)
    images in [0, 1] and of (N, 4) or (4,) boxes, to (N, 4) crop pixels in [0, crop].
    ``"aspect"`` moves the boxes as the pixels; ``"per_axis"`` is the paper's code (Table 2):
    x ↦ x·resize/W − (resize − crop)/2, likewise for y, as if the image were square."""
    if not 0 < int(crop) <= int(resize):
        raise ValueError(
            f"need 0 < crop <= resize (the shorter side would need padding), got "
            f"resize={resize}, crop={crop}"
        )
    if convention not in ("aspect", "per_axis"):
        raise ValueError(f"convention must be 'aspect' or 'per_axis', got {convention!r}")
    h, w = images.shape[-2:]
    b = _as_boxes(boxes)
    tv = tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=(h, w))
    out, moved = v2.Compose([v2.Resize(int(resize)), v2.CenterCrop(int(crop))])(images, tv)
    if convention == "per_axis":
        scale = b.new_tensor([resize / w, resize / h, resize / w, resize / h])
        moved = (b * scale - (resize - crop) / 2.0).clamp(0.0, float(crop))
    return out.clamp(0, 1), moved.as_subclass(Tensor)


def load_crop(
    path: Path,
    box: tuple[float, float, float, float],
    resize: int,
    crop: int,
    convention: BoxConvention,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """:func:`resize_crop` of an annotated file: (3, crop, crop) on ``device``, its (4,) box;
    ``ValueError`` naming the file if the box covers no pixel."""
    img = load_image(path).to(device)
    h, w = img.shape[1:]
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h or x1 <= x0 or y1 <= y0:
        raise ValueError(f"{path}: box {list(box)} covers no pixel of the {w}x{h} image")
    image, moved = resize_crop(img, torch.tensor([box]), resize, crop, convention)
    return image, moved[0]


def _as_boxes(boxes: Tensor | np.ndarray | list, name: str = "boxes") -> Tensor:
    t = torch.as_tensor(boxes)
    t = t if t.is_floating_point() else t.float()
    t = t[None] if t.shape == (4,) else t
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((t[:, 2] < t[:, 0]).any() | (t[:, 3] < t[:, 1]).any()):
        raise ValueError(f"{name} must satisfy x0 <= x1 and y0 <= y1 (xyxy order)")
    return t


def box_mask(boxes: Tensor | np.ndarray | list, size: int | tuple[int, int]) -> Tensor:
    """(N, H, W) bool masks, on the boxes' device, of the pixels (i, j) whose centres lie in
    the (N, 4) or (4,) boxes (x0 <= j + 0.5 < x1, y0 <= i + 0.5 < y1); ``size``: side or (H, W)."""
    b = _as_boxes(boxes)
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    cx = torch.arange(w, device=b.device, dtype=b.dtype) + 0.5
    cy = torch.arange(h, device=b.device, dtype=b.dtype) + 0.5
    in_x = (cx >= b[:, 0:1]) & (cx < b[:, 2:3])  # (N, W)
    in_y = (cy >= b[:, 1:2]) & (cy < b[:, 3:4])  # (N, H)
    return in_y[:, :, None] & in_x[:, None, :]
