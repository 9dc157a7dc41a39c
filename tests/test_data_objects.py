"""Bundled object images, their loader, and the Resize + CenterCrop box mapping."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.models import ResNet50_Weights
from torchvision.transforms import InterpolationMode

from fame_utils.data.objects import (
    ANNOTATION_COLUMNS,
    OBJECTS_DIR,
    ObjectSamples,
    load_sample_objects,
    read_annotations,
)
from fame_utils.data.transforms import box_mask, load_image, resize_crop

CATEGORIES = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
NO_BOX = [0.0, 0.0, 1.0, 1.0]


def resize_center_crop(img: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    return resize_crop(img, NO_BOX, resize, crop)[0]


def map_boxes(boxes, hw, resize, crop, convention="aspect") -> torch.Tensor:
    return resize_crop(torch.zeros(3, *hw), boxes, resize, crop, convention)[1]


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("hw", [(300, 400), (400, 300), (500, 257), (224, 224), (333, 500)])
def test_resize_center_crop_equals_torchvision(hw: tuple[int, int]) -> None:
    """Independent oracle: torchvision's Resize(256, bilinear, antialias) + CenterCrop(224)."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, *hw, generator=g)
    ours = resize_center_crop(img, 256, 224)
    ref = TF.center_crop(
        TF.resize(img, 256, interpolation=InterpolationMode.BILINEAR, antialias=True), 224
    )
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, ref.clamp(0, 1), atol=1e-6, rtol=0)


def test_resize_center_crop_batch_equals_single() -> None:
    g = torch.Generator().manual_seed(1)
    batch = torch.rand(3, 3, 150, 200, generator=g)
    out = resize_center_crop(batch, 116, 112)
    assert out.shape == (3, 3, 112, 112)
    for i in range(3):
        torch.testing.assert_close(out[i], resize_center_crop(batch[i], 116, 112))


def test_resize_crop_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="crop <= resize"):
        resize_center_crop(torch.rand(3, 30, 30), 24, 32)


def test_map_boxes_hand_case_aspect() -> None:
    # W=400, H=300: shorter side H -> 256, W -> int(256 * 400 / 300) = int(341.33) = 341.
    # Crop offsets: top = round((256 - 224) / 2) = 16, left = round((341 - 224) / 2) = round(58.5)
    # = 58 (round half to even, as torchvision). So x -> x * 0.8525 - 58,
    # y -> y * 0.85333 - 16.
    #   (100, 50, 300, 250) -> (85.25 - 58, 42.667 - 16, 255.75 - 58, 213.333 - 16)
    #                        = (27.25, 26.667, 197.75, 197.333)
    #   (0, 0, 400, 300)    -> (-58, -16, 283, 240) clipped to (0, 0, 224, 224)
    #   (380, 10, 400, 40)  -> x0 = 323.95 - 58 = 265.95 > 224: clipped to an empty box
    #                          (224, 8.533 - 16 -> 0, 224, 34.133 - 16 = 18.133)
    boxes = torch.tensor([[100.0, 50, 300, 250], [0, 0, 400, 300], [380, 10, 400, 40]])
    got = map_boxes(boxes, (300, 400), 256, 224)
    expected = torch.tensor(
        [
            [27.25, 42.0 + 2 / 3 - 16, 197.75, 213.0 + 1 / 3 - 16],
            [0.0, 0.0, 224.0, 224.0],
            [224.0, 0.0, 224.0, 34.0 + 2 / 15 - 16],
        ]
    )
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert box_mask(got, 224)[2].sum() == 0  # the clipped box is empty


def test_map_boxes_hand_case_per_axis() -> None:
    # Reference-code convention: each axis scaled to 256 as if square, then minus
    # (256 - 224) / 2 = 16: x -> x * 256 / 400 - 16 = 0.64 x - 16, y -> y * 256 / 300 - 16.
    #   (100, 50, 300, 250) -> (64 - 16, 42.667 - 16, 192 - 16, 213.333 - 16)
    #                        = (48, 26.667, 176, 197.333)
    #   (0, 0, 400, 300)    -> (-16, -16, 240, 240) clipped to (0, 0, 224, 224)
    boxes = torch.tensor([[100.0, 50, 300, 250], [0, 0, 400, 300]])
    got = map_boxes(boxes, (300, 400), 256, 224, convention="per_axis")
    expected = torch.tensor([[48.0, 26.0 + 2 / 3, 176.0, 197.0 + 1 / 3], [0.0, 0.0, 224.0, 224.0]])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # The paper's protocol: Resize(232) + CenterCrop(224) subtracts 4 px after scaling.
    got232 = map_boxes([0.0, 0.0, 100.0, 150.0], (300, 400), 232, 224, convention="per_axis")
    torch.testing.assert_close(got232, torch.tensor([[0.0, 0.0, 58.0 - 4, 116.0 - 4]]))


def test_conventions_agree_on_square_images() -> None:
    boxes = torch.tensor([[10.0, 20, 300, 400], [100, 0, 512, 37]])
    a = map_boxes(boxes, (512, 512), 256, 224, convention="aspect")
    p = map_boxes(boxes, (512, 512), 256, 224, convention="per_axis")
    torch.testing.assert_close(a, p)


def test_map_boxes_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        map_boxes(torch.zeros(2, 3), (10, 10), 8, 8)
    with pytest.raises(ValueError, match="x0 <= x1"):
        map_boxes([5.0, 0, 1, 4], (10, 10), 8, 8)
    with pytest.raises(ValueError, match="convention"):
        map_boxes([0.0, 0, 1, 4], (10, 10), 8, 8, convention="square")  # type: ignore[arg-type]


def _painted_mask(hw: tuple[int, int], box: tuple[int, int, int, int], convention: str):
    """Paint ``box`` into an image, transform it, and compare with the mapped box's masks."""
    h, w = hw
    x0, y0, x1, y1 = box
    img = torch.zeros(3, h, w)
    img[:, y0:y1, x0:x1] = 1.0
    out, mapped = resize_crop(img, torch.tensor([box], dtype=torch.float32), 256, 224, convention)
    painted = out[0] >= 0.5
    inner = box_mask(mapped + torch.tensor([1.0, 1.0, -1.0, -1.0]), 224)[0]  # shrunk by 1 px
    outer = box_mask(mapped + torch.tensor([-1.0, -1.0, 1.0, 1.0]), 224)[0]  # grown by 1 px
    return painted, inner, outer


@pytest.mark.parametrize(
    ("hw", "box"),
    [
        ((300, 400), (100, 50, 300, 250)),
        ((400, 300), (20, 30, 290, 380)),
        ((427, 640), (305, 125, 340, 410)),  # thin, like the rocket
        ((500, 500), (0, 0, 250, 500)),
        ((480, 640), (116, 86, 179, 156)),  # small, like the basketball
    ],
)
def test_box_mapping_matches_transformed_painted_box(hw, box) -> None:
    """The mapped box covers the transformed painted region up to 1 px at every edge."""
    painted, inner, outer = _painted_mask(hw, box, "aspect")
    assert painted.any()
    assert bool((inner & ~painted).sum() == 0), "pixels 1 px inside the box were not painted"
    assert bool((painted & ~outer).sum() == 0), "painted pixels more than 1 px outside the box"


def test_per_axis_convention_is_off_for_non_square_images() -> None:
    """The same check fails for the reference convention (so the check above can fail)."""
    painted, inner, outer = _painted_mask((300, 400), (100, 50, 300, 250), "per_axis")
    assert int((inner & ~painted).sum()) + int((painted & ~outer).sum()) > 100


def test_box_mask_hand_case() -> None:
    # Pixel centres are at 0.5, 1.5, 2.5, 3.5. Box (1, 0.5, 3, 2): columns with
    # 1 <= c < 3 -> 1, 2; rows with 0.5 <= c < 2 -> 0, 1.
    m = box_mask(torch.tensor([[1.0, 0.5, 3.0, 2.0]]), 4)
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 0:2, 1:3] = True
    assert m.dtype == torch.bool
    assert torch.equal(m, expected)
    # (0.6, 0, 1.4, 1) contains no pixel centre (0.5 < 0.6 and 1.5 >= 1.4); a whole box
    # covers everything; (H, W) sizes give non-square masks.
    m2 = box_mask([[0.6, 0.0, 1.4, 1.0], [0.0, 0.0, 5.0, 3.0]], (3, 5))
    assert m2.shape == (2, 3, 5)
    assert m2[0].sum() == 0
    assert bool(m2[1].all())


# --------------------------------------------------------------------------- load_image


def test_load_image_modes(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 10, 200, 255
    rgba[..., 3] = [[0, 128, 255], [255, 255, 0]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    t = load_image(tmp_path / "rgba.png")
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    torch.testing.assert_close(t[:, 0, 0], torch.tensor([10, 200, 255]) / 255.0)
    torch.testing.assert_close(t[:, 1, 2], torch.tensor([10, 200, 255]) / 255.0)  # alpha dropped

    gray = np.array([[0, 51], [255, 102]], dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (3, 2, 2)
    for c in range(3):
        torch.testing.assert_close(g[c], torch.from_numpy(gray).float() / 255.0)

    pal = Image.fromarray(gray, "L").convert("P")
    pal.save(tmp_path / "pal.png")
    torch.testing.assert_close(load_image(tmp_path / "pal.png"), g)

    cmyk = Image.new("CMYK", (2, 1), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    c = load_image(tmp_path / "cmyk.jpg")
    assert c.shape == (3, 1, 2)
    assert c[0].min() > 0.9 and c[1:].max() < 0.1

    g16 = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    t16 = load_image(tmp_path / "g16.png")
    torch.testing.assert_close(t16[1], torch.from_numpy(g16.astype(np.float64) / 65535).float())

    with pytest.raises(FileNotFoundError, match="nothere"):
        load_image(tmp_path / "nothere.png")


# --------------------------------------------------------------------------- bundled set


@pytest.fixture(scope="module")
def samples() -> ObjectSamples:
    torch.manual_seed(0)
    return load_sample_objects()


def test_required_files_exist() -> None:
    for name in ("coffee.png", "squirrel_cls.jpg", "baboon.jpg", "bus.jpg", "chelsea.png"):
        assert (OBJECTS_DIR / name).is_file(), name
    assert (OBJECTS_DIR / "SOURCES.md").is_file()


def test_annotations_csv_consistent() -> None:
    with (OBJECTS_DIR / "annotations.csv").open(newline="") as fh:
        assert tuple(next(csv.reader(fh))) == ANNOTATION_COLUMNS
    rows = read_annotations()
    assert len(rows) >= 20
    stems = [Path(r.file).stem for r in rows + read_annotations(OBJECTS_DIR / "composites")]
    assert len(set(stems)) == len(stems)  # names are unique across photos and composites
    sources = (OBJECTS_DIR / "SOURCES.md").read_text(encoding="utf-8")
    total = 0
    for r in rows:
        path = OBJECTS_DIR / r.file
        total += path.stat().st_size
        assert r.file in sources, f"{r.file} missing from SOURCES.md"
        with Image.open(path) as im:
            w, h = im.size
        assert max(w, h) <= 640, f"{r.file} is {w}x{h}; downscale it"
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, r.file
        assert Path(r.file).name == r.file and -1 <= r.class_index <= 999
        if r.class_index >= 0:
            assert CATEGORIES[r.class_index] == r.class_name, r.file
        assert r.box_source in ("hand-annotated (fame_utils)", "imgaug quokka_annotations.json")
    assert total < 5 * 1024 * 1024
    # imgaug's quokka box (148, 50, 550, 642) in the 960x643 original, scaled to 640x429.
    (quokka,) = [r for r in rows if r.file == "quokka.jpg"]
    assert quokka.class_index == -1
    expected = (148 * 640 / 960, 50 * 429 / 643, 550 * 640 / 960, 642 * 429 / 643)
    assert quokka.box == pytest.approx(expected, abs=1e-3)
    assert quokka.box_source == "imgaug quokka_annotations.json"


def test_load_sample_objects(samples: ObjectSamples) -> None:
    n = len(samples)
    assert n >= 20
    assert samples.images.shape == (n, 3, 224, 224)
    assert samples.images.dtype == torch.float32
    assert samples.images.min() >= 0 and samples.images.max() <= 1
    assert samples.labels.dtype == torch.long
    assert bool(((samples.labels >= 0) & (samples.labels <= 999)).all())  # -1 rows skipped
    assert len(set(samples.labels.tolist())) >= 15  # varied classes
    b = samples.boxes
    assert b.shape == (n, 4)
    assert bool(((b >= 0) & (b <= 224)).all())
    assert bool(((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all())
    masks = box_mask(samples.boxes, 224)
    assert masks.shape == (n, 224, 224) and masks.dtype == torch.bool
    assert bool((masks.flatten(1).sum(1) > 0).all())
    assert [CATEGORIES[i] for i in samples.labels.tolist()] == samples.class_names


def test_loaded_image_is_transformed_file(samples: ObjectSamples) -> None:
    i = samples.names.index("coffee")
    ref = resize_center_crop(load_image(OBJECTS_DIR / "coffee.png"), 256, 224)
    torch.testing.assert_close(samples.images[i], ref)
    assert samples.labels[i] == CATEGORIES.index("espresso")


def test_subsets_and_names(samples: ObjectSamples) -> None:
    sub = samples[[samples.names.index("bus"), samples.names.index("coffee")]]
    assert sub.names == ["bus", "coffee"]
    torch.testing.assert_close(sub.images[1], samples.images[samples.names.index("coffee")])
    assert len(samples[2:5]) == 3
    assert len(samples[samples.labels == CATEGORIES.index("orange")]) == 2

    picked = load_sample_objects(["squirrel_cls", "baboon.jpg"])
    assert picked.names == ["squirrel_cls", "baboon"]
    assert picked.labels.tolist() == [CATEGORIES.index("fox squirrel"), CATEGORIES.index("baboon")]
    with pytest.raises(ValueError, match="unknown sample"):
        load_sample_objects(["unicorn"])
    assert "quokka" not in samples.names  # no ImageNet class: loaded only by name, label -1
    assert load_sample_objects(["quokka"]).labels.tolist() == [-1]


def test_conventions_in_loader() -> None:
    a = load_sample_objects(["baboon", "bus"], resize=232, crop=224)
    p = load_sample_objects(["baboon", "bus"], resize=232, crop=224, convention="per_axis")
    torch.testing.assert_close(a.boxes[0], p.boxes[0])  # square image: identical
    assert not torch.allclose(a.boxes[1], p.boxes[1])  # 480x640: they differ
    torch.testing.assert_close(a.images, p.images)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="object annotations not found"):
        read_annotations(tmp_path / "no_such_dir")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_on_cuda_matches_cpu() -> None:
    cpu = load_sample_objects(["coffee", "bus", "squirrel_cls"])
    gpu = load_sample_objects(["coffee", "bus", "squirrel_cls"], device="cuda")
    assert gpu.images.is_cuda and gpu.labels.is_cuda and gpu.boxes.is_cuda
    torch.testing.assert_close(gpu.images.cpu(), cpu.images, atol=2e-6, rtol=0)
    torch.testing.assert_close(gpu.boxes.cpu(), cpu.boxes)


def test_numpy_integer_index(samples: ObjectSamples) -> None:
    assert samples[np.int64(1)].names == [samples.names[1]]
    with pytest.raises(IndexError):
        samples[len(samples)]
