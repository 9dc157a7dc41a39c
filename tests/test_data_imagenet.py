"""ImageNet validation loader on a tiny fake ImageNet written to tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fame_utils.data.imagenet import (
    find_imagenet_files,
    load_imagenet_val,
    read_synset_mapping,
)
from fame_utils.data.transforms import load_image, resize_crop

SYNSETS = ["n01440764", "n01443537", "n01484850"]
# image id -> (size (W, H), objects [(synset, box)])
ANNOTATIONS = {
    1: ((300, 200), [("n01443537", (10, 20, 150, 180)), ("n01440764", (0, 0, 5, 5))]),
    2: ((200, 320), [("n01440764", (30, 40, 190, 300))]),
    3: ((256, 256), [("n01443537", (0, 0, 256, 256))]),
    4: ((240, 240), [("n01484850", (100, 100, 200, 220))]),
    5: ((260, 240), [("n01443537", (5, 5, 100, 100))]),
    6: ((241, 300), [("n01440764", (50, 60, 70, 80))]),
    7: ((280, 250), [("n01443537", (1, 2, 3, 4))]),
}


def _name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}"


def _write_images(folder, ids=None, subfolders=False):
    rng = np.random.default_rng(0)
    for i, ((w, h), objs) in ANNOTATIONS.items():
        if ids is not None and i not in ids:
            continue
        d = folder / objs[0][0] if subfolders else folder
        d.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{_name(i)}.JPEG", quality=95)


def _write_csv(path):
    lines = ["ImageId,PredictionString"]
    for i, (_, objs) in ANNOTATIONS.items():
        pred = " ".join(f"{s} {' '.join(str(v) for v in b)}" for s, b in objs)
        lines.append(f"{_name(i)},{pred} ")
    path.write_text("\n".join(lines) + "\n")


def _write_xml(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, ((w, h), objs) in ANNOTATIONS.items():
        body = "".join(
            f"<object><name>{s}</name><pose>Unspecified</pose><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for s, b in objs
        )
        (folder / f"{_name(i)}.xml").write_text(
            f"<annotation><folder>val</folder><filename>{_name(i)}</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{body}</annotation>"
        )


def _write_mapping(path):
    path.write_text("\n".join(f"{s} fish number {k}, a fish" for k, s in enumerate(SYNSETS)) + "\n")


@pytest.fixture
def kaggle_root(tmp_path):
    root = tmp_path / "kaggle"
    _write_images(root / "ILSVRC" / "Data" / "CLS-LOC" / "val")
    _write_csv(root / "LOC_val_solution.csv")
    _write_mapping(root / "LOC_synset_mapping.txt")
    return root


def test_kaggle_layout_first_object_labels_and_boxes(kaggle_root):
    data = load_imagenet_val(kaggle_root, per_class=None, resize=232, crop=224)
    assert [r.image_id for r in data.records] == [_name(i) for i in (2, 6, 1, 3, 5, 7, 4)]
    assert [r.label for r in data.records] == [0, 0, 1, 1, 1, 1, 2]
    rec1 = next(r for r in data.records if r.image_id == _name(1))
    assert rec1.synset == "n01443537" and rec1.box == (10.0, 20.0, 150.0, 180.0)
    item = data[2]
    assert item.name == _name(1) and item.label == 1
    image, box = resize_crop(load_image(rec1.path), [rec1.box], 232, 224, "aspect")
    torch.testing.assert_close(item.image, image)
    torch.testing.assert_close(item.box, box[0])
    # aspect-preserving by hand: 300×200 -> 348×232, crop offsets left 62, top 4; the box's
    # left edge (10·1.16 − 62 < 0) is clipped to the crop
    torch.testing.assert_close(
        item.box, torch.tensor([0.0, 20 * 1.16 - 4, 150 * 1.16 - 62, 180 * 1.16 - 4])
    )
    per_axis = load_imagenet_val(kaggle_root, per_class=None, box_convention="per_axis")
    torch.testing.assert_close(
        per_axis[2].box,
        torch.tensor(
            [10 * 232 / 300 - 4, 20 * 232 / 200 - 4, 150 * 232 / 300 - 4, 180 * 232 / 200 - 4]
        ),
    )
    assert per_axis.identity != data.identity
    assert item.image.shape == (3, 224, 224)


def test_xml_layout_with_imagefolder_images_gives_the_same_records(kaggle_root, tmp_path):
    root = tmp_path / "ilsvrc"
    _write_images(root / "val", subfolders=True)
    _write_xml(root / "ILSVRC2012_bbox_val_v3" / "val")
    _write_mapping(tmp_path / "map.txt")
    xml = load_imagenet_val(root, per_class=None, synset_mapping=tmp_path / "map.txt")
    csv = load_imagenet_val(kaggle_root, per_class=None)
    assert [(r.image_id, r.label, r.box) for r in xml.records] == [
        (r.image_id, r.label, r.box) for r in csv.records
    ]
    assert xml.identity == csv.identity  # same selection and preprocessing


def test_per_class_sampler_is_seeded_and_balanced(kaggle_root):
    images, annotations, mapping = find_imagenet_files(kaggle_root)
    assert annotations.name == "LOC_val_solution.csv" and mapping.name == "LOC_synset_mapping.txt"
    assert sorted(images) == [_name(i) for i in range(1, 8)]
    a = load_imagenet_val(kaggle_root, per_class=2, seed=0)
    b = load_imagenet_val(kaggle_root, per_class=2, seed=0)
    assert [r.image_id for r in a.records] == [r.image_id for r in b.records]
    assert [r.label for r in a.records] == [0, 0, 1, 1, 2]  # class 2 has only one image
    picks = {
        tuple(r.image_id for r in load_imagenet_val(kaggle_root, per_class=2, seed=s).records)
        for s in range(20)
    }
    assert len(picks) > 1  # the seed changes the draw among class 1's four images
    recs = load_imagenet_val(kaggle_root, per_class=None).records
    one = load_imagenet_val(kaggle_root, per_class=1, seed=3).records
    assert one == load_imagenet_val(kaggle_root, per_class=1, seed=3).records
    assert [r.label for r in one] == [0, 1, 2] and set(one) <= set(recs)
    assert len(load_imagenet_val(kaggle_root, per_class=5, max_images=3)) == 3


def test_missing_files_are_listed(tmp_path, kaggle_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_imagenet_val(empty)
    msg = str(e.value)
    assert "validation images" in msg and "LOC_val_solution.csv" in msg
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_imagenet_val(tmp_path / "nowhere")
    # annotated images without a file
    (kaggle_root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / f"{_name(4)}.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match=_name(4)):
        load_imagenet_val(kaggle_root)
    # no mapping file and fewer than 1000 synsets: the error names the file to provide
    (kaggle_root / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(FileNotFoundError, match="LOC_synset_mapping.txt"):
        load_imagenet_val(kaggle_root)


def test_synset_mapping_forms(tmp_path):
    p = tmp_path / "map.txt"
    _write_mapping(p)
    assert read_synset_mapping(p) == {s: i for i, s in enumerate(SYNSETS)}
    p.write_text("tench\n")
    with pytest.raises(ValueError, match="synset id"):
        read_synset_mapping(p)


def test_runner_runs_on_imagenet_items(kaggle_root, tmp_path, tiny_cnn):
    from fame_utils import Attribution
    from fame_utils.experiment.run import run_experiment
    from fame_utils.metrics.adapters import IoUMetric

    class BoxCentre:
        name = "centre"

        def __call__(self, model, images, target):
            m = torch.zeros(images.shape[0], *images.shape[2:])
            m[:, 56:168, 56:168] = 1.0
            return Attribution(m)

    data = load_imagenet_val(kaggle_root, per_class=1, resize=232, crop=224)
    res = run_experiment(
        tiny_cnn, data, [BoxCentre()], [IoUMetric()], tmp_path / "run", batch_size=2, progress=False
    )
    centre = torch.zeros(224, 224, dtype=torch.bool)
    centre[56:168, 56:168] = True
    from fame_utils.data.transforms import box_mask

    for k in range(len(data)):
        b = box_mask(data[k].box, 224)[0]
        want = (b & centre).sum() / (b | centre).sum() * 100
        got = res.per_item("IoU", threshold=0.5).loc[data.records[k].image_id, "centre"]
        assert got == pytest.approx(want.item(), abs=1e-4)


def test_protocol_list_is_taken_as_it_is_with_duplicates(kaggle_root, tmp_path):
    # the authors' list format: ImageId, PredictionString, target; rows in its order,
    # a repeated image counts twice (drawn with replacement)
    lst = tmp_path / "imagenet.csv"
    lst.write_text(
        "ImageId,PredictionString,target\n"
        f"{_name(4)},n01484850 100 100 200 220 ,n01484850\n"
        f"{_name(1)},n01443537 10 20 150 180 n01440764 0 0 5 5 ,n01443537\n"
        f"{_name(4)},n01484850 100 100 200 220 ,n01484850\n"
    )
    data = load_imagenet_val(kaggle_root, protocol=lst, resize=232, crop=224)
    assert len(data) == 3
    assert [r.image_id for r in data.records] == [_name(4), _name(1), _name(4)]
    assert [r.label for r in data.records] == [2, 1, 2]
    assert data.records[1].box == (10.0, 20.0, 150.0, 180.0)
    torch.testing.assert_close(data[0].image, data[2].image)
    # the list differs from our own per-class draw and from the same list without the duplicate
    assert data.identity != load_imagenet_val(kaggle_root, per_class=1).identity
    lst2 = tmp_path / "once.csv"
    lst2.write_text("\n".join(lst.read_text().splitlines()[:3]) + "\n")
    assert len(load_imagenet_val(kaggle_root, protocol=lst2)) == 2
    assert [
        r.label for r in load_imagenet_val(kaggle_root, protocol=lst, max_images=1).records
    ] == [2]


@pytest.mark.parametrize(
    "box, phrase",
    [("150 180 10 20", "reversed"), ("10 nan 150 180", "NaN"), ("10 20 x 180", "bad box")],
)
def test_bad_boxes_name_the_file_and_line(kaggle_root, tmp_path, box, phrase):
    lst = tmp_path / "bad.csv"
    lst.write_text(
        "ImageId,PredictionString\n"
        f"{_name(4)},n01484850 100 100 200 220\n"
        f"{_name(1)},n01443537 {box}\n"
    )
    with pytest.raises(ValueError, match=rf"bad\.csv:3.*{phrase}"):
        load_imagenet_val(kaggle_root, protocol=lst)
    # the same in the annotation CSV that the per-class draw reads
    (kaggle_root / "LOC_val_solution.csv").write_text(lst.read_text())
    with pytest.raises(ValueError, match=rf"LOC_val_solution\.csv:3.*{phrase}"):
        load_imagenet_val(kaggle_root)


# ---- issue 18: one image reader, annotation checks -------------------------------------

_RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)


@pytest.mark.parametrize(
    "make, expected",
    [
        ("rgb8", _RGB / 255),
        ("gray8", np.repeat(np.array([[0, 51], [102, 255]])[..., None], 3, 2) / 255),
        ("gray16", np.repeat(np.array([[0, 257], [32768, 65535]])[..., None], 3, 2) / 65535),
        ("rgba", _RGB / 255),  # alpha dropped, not composited
        ("palette", _RGB / 255),
        ("exif-rotated", _RGB / 255),  # stored order, the order boxes refer to
    ],
)
def test_the_one_image_reader(tmp_path, make, expected):
    path = tmp_path / "x.png"
    if make == "rgb8":
        Image.fromarray(_RGB).save(path)
    elif make == "gray8":
        Image.fromarray(np.array([[0, 51], [102, 255]], np.uint8)).save(path)
    elif make == "gray16":
        Image.fromarray(np.array([[0, 257], [32768, 65535]], np.uint16)).save(path)
    elif make == "rgba":
        alpha = np.array([[0, 128], [255, 7]], np.uint8)[..., None]
        Image.fromarray(np.concatenate([_RGB, alpha], 2), "RGBA").save(path)
    elif make == "palette":
        Image.fromarray(_RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to display"
        Image.fromarray(_RGB).save(path, exif=exif)
        with Image.open(path) as im:
            assert im.getexif()[0x0112] == 6
    x = load_image(path)
    assert x.shape == (3, *expected.shape[:2]) and x.dtype == torch.float32
    torch.testing.assert_close(
        x, torch.from_numpy(expected).permute(2, 0, 1).float(), rtol=0, atol=1e-6
    )


def test_a_truncated_image_names_its_file(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 99, np.uint8)).save(tmp_path / "t.jpg", quality=90)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.jpg.*truncated"):
        load_image(tmp_path / "t.jpg")


def _one_class_root(tmp_path, rows: list[str]):
    for i in (1, 2):
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(
            tmp_path / f"ILSVRC2012_val_{i:08d}.JPEG"
        )
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows))
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    return tmp_path


def test_a_duplicated_id_with_another_class_is_refused(tmp_path):
    root = _one_class_root(
        tmp_path,
        [
            "ILSVRC2012_val_00000001,n01440764 1 2 30 20",
            "ILSVRC2012_val_00000001,n01443537 1 2 9 9",
        ],
    )
    with pytest.raises(ValueError, match=r"csv:3.*listed again \(first at .*csv:2\)"):
        load_imagenet_val(root, per_class=None)


def test_a_box_outside_its_image_is_refused(tmp_path):
    root = _one_class_root(tmp_path, ["ILSVRC2012_val_00000001,n01440764 60 45 80 70"])
    data = load_imagenet_val(root, per_class=None, resize=40, crop=32)
    with pytest.raises(ValueError, match=r"ILSVRC2012_val_00000001.*covers no pixel"):
        data[0]


@pytest.mark.parametrize("per_class", [0, -1, True, 2.5])
def test_per_class_must_be_a_positive_count(tmp_path, per_class):
    root = _one_class_root(tmp_path, ["ILSVRC2012_val_00000001,n01440764 1 2 30 20"])
    with pytest.raises(ValueError, match="per_class"):
        load_imagenet_val(root, per_class=per_class)
