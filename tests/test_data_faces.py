"""Tests of the bundled face data (data/faces/) and its loader (fame_utils.data.faces)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fame_utils.data import faces
from fame_utils.data.faces import (
    FACES_DIR,
    SAMPLE_FACE_SUBSETS,
    FacePairs,
    load_face_protocol,
    load_sample_faces,
)

REPO = Path(__file__).resolve().parents[1]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def files_table() -> dict[str, dict[str, str]]:
    return {r["file"]: r for r in _read_csv(FACES_DIR / "files.csv")}


def _landmarks(row: dict[str, str]) -> np.ndarray:
    return np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(5)])


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def script():
    """scripts/make_face_chips.py as a module (its top level needs only numpy and Pillow)."""
    spec = importlib.util.spec_from_file_location(
        "make_face_chips", REPO / "scripts" / "make_face_chips.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


# ----------------------------------------------------------------------------------------------
# The bundled data


def test_faces_dir_is_the_repository_folder():
    assert FACES_DIR == REPO / "data" / "faces"
    assert (FACES_DIR / "README.md").is_file() and (FACES_DIR / "SOURCES.md").is_file()


@pytest.mark.parametrize("subset", SAMPLE_FACE_SUBSETS)
def test_protocol_files_are_well_formed(subset, files_table):
    path = FACES_DIR / "protocols" / f"{subset}.csv"
    with path.open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:3] == ["G", "P", "T"]
    rows = _read_csv(path)
    labels = [r["T"] for r in rows]
    assert set(labels) == {"0", "1"}
    n_gen, n_imp = labels.count("1"), labels.count("0")
    assert n_imp >= 8
    assert n_gen >= (6 if subset == "pose" else 8)
    for r in rows:
        for col in ("G", "P"):
            assert (FACES_DIR / r[col]).is_file(), r[col]
            assert r[col] in files_table, f"{r[col]} missing from files.csv"
        g, p = files_table[r["G"]], files_table[r["P"]]
        # Labels agree with the identities: genuine = same person, impostor = different people.
        assert (g["person"] == p["person"]) == (r["T"] == "1"), r
        assert g["variation"] == "clean"  # galleries are clean chips
        assert p["variation"] == ("clean" if subset == "pose" else r["variation"])
        assert r["source"] == (p["derived_from"] or r["P"])
    # Impostors carry the same variations as genuine pairs.
    variations = {t: {r["variation"] for r in rows if r["T"] == t} for t in ("0", "1")}
    assert variations["0"] == variations["1"]
    # No pair listed twice.
    assert len({(r["G"], r["P"]) for r in rows}) == len(rows)


def test_protocol_variations_are_the_documented_ones():
    var = {
        s: {r["variation"] for r in _read_csv(FACES_DIR / "protocols" / f"{s}.csv")}
        for s in SAMPLE_FACE_SUBSETS
    }
    assert var["occlusion"] == {
        "glasses",
        "scarf",
        "mask_white",
        "mask_blue",
        "mask_black",
        "mask_green",
    }
    assert var["resolution"] == {"x4", "x8", "x16"}
    assert var["pose"] == {"pose"}


def test_pose_genuine_pairs_are_different_photos(files_table):
    rows = _read_csv(FACES_DIR / "protocols" / "pose.csv")
    genuine = [r for r in rows if r["T"] == "1"]
    for r in genuine:
        g, p = files_table[r["G"]], files_table[r["P"]]
        assert g["photo"] != p["photo"], r
        assert g["variation"] == p["variation"] == "clean"
    # The photos themselves differ (not the same chip under two names).
    for r in genuine:
        diff = np.abs(_rgb(FACES_DIR / r["G"]).astype(int) - _rgb(FACES_DIR / r["P"]).astype(int))
        assert diff.mean() > 10


def test_chips_are_150px_rgb_and_small():
    chips = sorted((FACES_DIR / "chips").glob("*.png"))
    assert len(chips) >= 10
    for path in sorted(FACES_DIR.rglob("*.png")):
        with Image.open(path) as im:
            assert im.size == (150, 150) and im.mode == "RGB", path
    total = sum(p.stat().st_size for p in FACES_DIR.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024


def test_files_table_landmarks_match_dlib_on_the_chips(files_table):
    """Oracle for the landmark mapping into chip coordinates: dlib's detector and 5-point
    predictor run on the chip itself find the stored landmarks again (within 2.5 px)."""
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    checked = 0
    for name, row in files_table.items():
        if row["variation"] != "clean":
            continue
        img = np.ascontiguousarray(_rgb(FACES_DIR / name))
        rects, _, _ = detector.run(img, 1, 0.0)
        if not rects:  # strongly turned faces (t1e) are not found again in the chip
            continue
        shape = predictor(img, rects[0])
        found = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=float)
        assert np.abs(found - _landmarks(row)).max() < 2.5, name
        checked += 1
    assert checked >= 10


def test_occluders_cover_the_right_part_of_the_face(files_table):
    """Glasses change the eye band and leave the mouth; scarves and masks the reverse."""
    for name, row in files_table.items():
        if not name.startswith("occlusion/"):
            continue
        lm = _landmarks(row)
        eye_y, nose_y = lm[:4, 1].mean(), lm[4, 1]
        x0, x1 = int(lm[:, 0].min()), int(lm[:, 0].max())
        diff = np.abs(
            _rgb(FACES_DIR / name).astype(float)
            - _rgb(FACES_DIR / row["derived_from"]).astype(float)
        ).mean(-1)
        eyes = diff[int(eye_y) - 4 : int(eye_y) + 5, x0 : x1 + 1].mean()
        mouth = diff[int(nose_y) + 12 : int(nose_y) + 22, x0 : x1 + 1].mean()
        if row["variation"] == "glasses":
            assert eyes > 40 and mouth < 1, (name, eyes, mouth)
        else:
            assert mouth > 20 and eyes < 1, (name, eyes, mouth)


def test_variations_regenerate_from_the_committed_chips(script, files_table):
    """The drawn occluders and low-resolution probes are reproducible from the clean chips and
    the stored landmarks (the mask textures need the insightface download, so masks are skipped)."""
    draw = {"glasses": script.draw_glasses, "scarf": script.draw_scarf}
    checked = 0
    for name, row in files_table.items():
        var = row["variation"]
        if var == "clean" or var.startswith("mask_"):
            continue
        chip = _rgb(FACES_DIR / row["derived_from"])
        if var in draw:
            expected = draw[var](chip, _landmarks(row))
        else:
            expected = script.low_resolution(chip, int(var[1:]))
        np.testing.assert_array_equal(_rgb(FACES_DIR / name), expected, err_msg=name)
        checked += 1
    assert checked >= 12 + 4


def test_resolution_probes_lose_detail_with_the_factor(files_table):
    def detail(img: np.ndarray) -> float:
        g = img.astype(float).mean(-1)
        return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())

    probes = {}
    for name, row in files_table.items():
        if name.startswith("resolution/"):
            probes.setdefault(row["derived_from"], {})[row["variation"]] = detail(
                _rgb(FACES_DIR / name)
            )
    assert probes
    for source, d in probes.items():
        clean = detail(_rgb(FACES_DIR / source))
        assert clean > d["x4"] > d["x8"] > d["x16"], (source, clean, d)


# ----------------------------------------------------------------------------------------------
# Loader on hand-made data


def _write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def _write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny(tmp_path):
    """Three 8x8 images with known pixels, in tmp_path/crops, and their arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        name: rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for name in ("a", "b", "c")
    }
    for name, arr in arrays.items():
        _write_png(tmp_path / "crops" / f"{name}.png", arr)
    return tmp_path, arrays


def _as_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 255


def test_load_face_protocol_order_labels_and_pixels(tiny):
    root, arrays = tiny
    csv_path = _write_csv(
        root / "pairs.csv",
        [
            "G,P,T,variation,session",
            "a.png,b.png,1,glasses,s1",
            "b.png,c.png,0,scarf,s2",
            "c.png,a.png,1,glasses,s3",
        ],
    )
    pairs = load_face_protocol(csv_path, root / "crops")
    assert isinstance(pairs, FacePairs) and len(pairs) == 3
    assert pairs.gallery.shape == pairs.probe.shape == (3, 3, 8, 8)
    assert pairs.gallery.dtype == torch.float32
    assert pairs.genuine.tolist() == [True, False, True] and pairs.genuine.dtype == torch.bool
    assert pairs.gallery_files == ["a.png", "b.png", "c.png"]
    assert pairs.probe_files == ["b.png", "c.png", "a.png"]
    assert pairs.variation == ["glasses", "scarf", "glasses"]
    for i, (g, p) in enumerate([("a", "b"), ("b", "c"), ("c", "a")]):
        torch.testing.assert_close(pairs.gallery[i], _as_tensor(arrays[g]), rtol=0, atol=0)
        torch.testing.assert_close(pairs.probe[i], _as_tensor(arrays[p]), rtol=0, atol=0)


def test_load_face_protocol_reads_each_file_once(tiny, monkeypatch):
    root, _ = tiny
    csv_path = _write_csv(
        root / "crops" / "pairs.csv",
        ["G,P,T", "a.png,b.png,1", "a.png,c.png,0", "b.png,a.png,1", "a.png,a.png,1"],
    )
    calls = []
    original = faces._load_image
    monkeypatch.setattr(
        faces, "_load_image", lambda path, size: calls.append(path) or original(path, size)
    )
    pairs = load_face_protocol(csv_path)  # root defaults to the CSV's folder
    assert sorted(p.name for p in calls) == ["a.png", "b.png", "c.png"]
    torch.testing.assert_close(pairs.gallery[0], pairs.gallery[1])
    torch.testing.assert_close(pairs.gallery[0], pairs.probe[2])


def test_load_face_protocol_resizes_like_pil_bilinear(tiny):
    root, arrays = tiny
    csv_path = _write_csv(root / "p.csv", ["G,P,T", "a.png,b.png,true", "c.png,a.png,FALSE"])
    small = load_face_protocol(csv_path, root / "crops", size=4)
    big = load_face_protocol(csv_path, root / "crops", size=12)
    assert small.gallery.shape == (2, 3, 4, 4) and big.probe.shape == (2, 3, 12, 12)
    assert small.genuine.tolist() == [True, False]
    # torch's antialiased bilinear resize matches Pillow's BILINEAR filter (an independent oracle).
    for pairs, (h, w) in ((small, (4, 4)), (big, (12, 12))):
        for i, name in enumerate(("a", "c")):
            ref = Image.fromarray(arrays[name]).resize((w, h), Image.Resampling.BILINEAR)
            torch.testing.assert_close(
                pairs.gallery[i], _as_tensor(np.asarray(ref)), rtol=0, atol=1.5 / 255
            )
    # A constant image stays constant; values stay in [0, 1].
    const = np.full((8, 8, 3), 200, np.uint8)
    _write_png(root / "crops" / "const.png", const)
    one = load_face_protocol(
        _write_csv(root / "q.csv", ["G,P,T", "const.png,const.png,1"]), root / "crops", size=5
    )
    torch.testing.assert_close(one.gallery, torch.full((1, 3, 5, 5), 200 / 255))
    assert 0 <= float(big.gallery.min()) and float(big.gallery.max()) <= 1


def test_load_face_protocol_absolute_paths_and_gray(tiny):
    root, arrays = tiny
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(gray, mode="L").save(root / "gray.png")
    csv_path = _write_csv(
        root / "abs.csv",
        [
            "G,P,T",
            f"{root / 'gray.png'},{root / 'crops' / 'a.png'},0",
            "b.png,c.png,1",
            "c.png,b.png,1",
        ],
    )
    pairs = load_face_protocol(csv_path, root / "crops")
    torch.testing.assert_close(pairs.gallery[0], _as_tensor(np.repeat(gray[..., None], 3, axis=-1)))
    assert pairs.gallery_files[1:] == ["b.png", "c.png"] and pairs.genuine.tolist() == [0, 1, 1]


def test_load_face_protocol_errors(tiny):
    root, _ = tiny
    crops = root / "crops"
    with pytest.raises(FileNotFoundError, match="no_such.csv"):
        load_face_protocol(root / "no_such.csv")
    missing = _write_csv(
        root / "m.csv", ["G,P,T", "a.png,x1.png,1", "x2.png,b.png,0", "x1.png,c.png,0"]
    )
    with pytest.raises(FileNotFoundError) as err:
        load_face_protocol(missing, crops)
    msg = str(err.value)
    assert "2 image file(s)" in msg and "x1.png" in msg and "x2.png" in msg and "a.png" not in msg
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['T'\]"):
        load_face_protocol(_write_csv(root / "c.csv", ["G,P,label", "a.png,b.png,1"]), crops)
    with pytest.raises(ValueError, match=r"\['G', 'P'\]"):
        load_face_protocol(_write_csv(root / "c2.csv", ["gallery,probe,T", "a.png,b.png,1"]), crops)
    with pytest.raises(ValueError, match=r"line 3: '2'.*line 4: 'x'"):
        load_face_protocol(
            _write_csv(
                root / "t.csv", ["G,P,T", "a.png,b.png,1", "a.png,c.png,2", "b.png,c.png,x"]
            ),
            crops,
        )
    with pytest.raises(ValueError, match="no pairs"):
        load_face_protocol(_write_csv(root / "e.csv", ["G,P,T"]), crops)
    with pytest.raises(ValueError, match="empty file"):
        load_face_protocol(_write_csv(root / "e2.csv", []), crops)
    with pytest.raises(ValueError, match="empty P"):
        load_face_protocol(_write_csv(root / "e3.csv", ["G,P,T", "a.png,,1"]), crops)
    _write_png(crops / "big.png", np.zeros((10, 10, 3)))
    sizes = _write_csv(root / "s.csv", ["G,P,T", "a.png,big.png,1"])
    with pytest.raises(ValueError, match="size="):
        load_face_protocol(sizes, crops)
    assert load_face_protocol(sizes, crops, size=6).probe.shape == (1, 3, 6, 6)
    with pytest.raises(TypeError, match="size"):
        load_face_protocol(sizes, crops, size="big")


# ----------------------------------------------------------------------------------------------
# FacePairs


def test_face_pairs_subset_and_select():
    pairs = load_sample_faces("resolution")
    n = len(pairs)
    whole = pairs.subset(slice(None))
    torch.testing.assert_close(whole.probe, pairs.probe)
    one = pairs.subset(3)
    assert len(one) == 1 and one.probe_files == [pairs.probe_files[3]]
    torch.testing.assert_close(one.gallery[0], pairs.gallery[3])
    picked = pairs.subset([5, 0, -1])
    assert picked.gallery_files == [pairs.gallery_files[i] for i in (5, 0, n - 1)]
    assert picked.variation == [pairs.variation[i] for i in (5, 0, n - 1)]
    mask = pairs.genuine.clone()
    assert pairs.subset(mask).genuine.all() and len(pairs.subset(mask)) == int(mask.sum())
    x8 = pairs.select(variation="x8", genuine=False)
    assert len(x8) > 0 and set(x8.variation) == {"x8"} and not x8.genuine.any()
    assert len(pairs.select(variation=["x4", "x16"])) == sum(
        v in ("x4", "x16") for v in pairs.variation
    )
    with pytest.raises(ValueError, match="x32"):
        pairs.select(variation="x32")
    with pytest.raises(IndexError):
        pairs.subset(n)
    with pytest.raises(IndexError):
        pairs.subset(torch.ones(n + 1, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------
# The bundled protocols through the loader


@pytest.mark.parametrize("subset", SAMPLE_FACE_SUBSETS)
def test_load_sample_faces(subset):
    pairs = load_sample_faces(subset)
    rows = _read_csv(FACES_DIR / "protocols" / f"{subset}.csv")
    assert len(pairs) == len(rows)
    assert pairs.gallery.shape == pairs.probe.shape == (len(rows), 3, 150, 150)
    assert pairs.genuine.tolist() == [r["T"] == "1" for r in rows]
    assert pairs.probe_files == [r["P"] for r in rows] and pairs.variation == [
        r["variation"] for r in rows
    ]
    assert 0 <= float(pairs.probe.min()) and float(pairs.probe.max()) <= 1
    i = len(rows) - 1
    torch.testing.assert_close(
        pairs.probe[i], _as_tensor(_rgb(FACES_DIR / rows[i]["P"])), rtol=0, atol=0
    )
    small = load_sample_faces(subset, size=112)
    assert small.gallery.shape == (len(rows), 3, 112, 112)


def test_load_sample_faces_unknown_subset():
    with pytest.raises(ValueError, match=r"'occlusion', 'resolution', 'pose'"):
        load_sample_faces("arface")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_sample_faces_on_cuda():
    pairs = load_sample_faces("pose", device="cuda", size=112)
    assert pairs.gallery.is_cuda and pairs.genuine.is_cuda
    sub = pairs.select(genuine=True)
    assert sub.probe.is_cuda and sub.genuine.all()
    torch.testing.assert_close(pairs.to("cpu").probe, load_sample_faces("pose", size=112).probe)


@pytest.mark.slow
def test_dlib_descriptor_separates_genuine_from_impostor_pairs():
    """Oracle: dlib's face descriptor on the loaded chips puts genuine pairs closer than impostor
    pairs. On the clean pose subset every pair is classified right by dlib's 0.6 rule; on the
    varied subsets the means are ordered."""
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    cache: dict[str, np.ndarray] = {}  # file names are relative to data/faces: unique

    def descriptor(name: str, image: torch.Tensor) -> np.ndarray:
        if name not in cache:
            chip = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            cache[name] = np.asarray(net.compute_face_descriptor(np.ascontiguousarray(chip)))
        return cache[name]

    for subset in SAMPLE_FACE_SUBSETS:
        pairs = load_sample_faces(subset)
        dist = np.array(
            [
                np.linalg.norm(descriptor(g, pairs.gallery[i]) - descriptor(p, pairs.probe[i]))
                for i, (g, p) in enumerate(zip(pairs.gallery_files, pairs.probe_files))
            ]
        )
        genuine = pairs.genuine.numpy()
        assert dist[genuine].mean() < dist[~genuine].mean() - 0.1, subset
        if subset == "pose":
            assert dist[genuine].max() < 0.6 < dist[~genuine].min()


def test_hdf5_crops_round_trip(tmp_path):
    """The authors' crop store: one HDF5 file per image (dataset ``data``, H × W × 3 RGB),
    named from the protocol path with its extension dropped and ``/`` → ``_``."""
    import h5py

    from fame_utils.data.faces import h5_crop_name

    assert h5_crop_name("ARface/glass/m-001-1.bmp") == "ARface_glass_m-001-1.h5"
    rng = np.random.default_rng(0)
    crops = {
        "ARface/frontal/m-001-1.bmp": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "ARface/glass/m-001-8.bmp": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "ARface/glass/w-002-8.bmp": rng.random((8, 8, 3), dtype=np.float32),  # float in [0, 1]
    }
    for name, arr in crops.items():
        with h5py.File(tmp_path / h5_crop_name(name), "w") as fh:
            fh.create_dataset("data", data=arr)
    # an ordinary image file next to them is read as it is
    png = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(png).save(tmp_path / "plain.png")
    (tmp_path / "glass.csv").write_text(
        "G,P,T\n"
        "ARface/frontal/m-001-1.bmp,ARface/glass/m-001-8.bmp,1\n"
        "ARface/frontal/m-001-1.bmp,ARface/glass/w-002-8.bmp,0\n"
        "plain.png,ARface/glass/m-001-8.bmp,0\n"
    )
    pairs = load_face_protocol(tmp_path / "glass.csv")
    want = {k: torch.from_numpy(v.astype(np.float32)).permute(2, 0, 1) for k, v in crops.items()}
    want = {k: (v / 255 if crops[k].dtype == np.uint8 else v) for k, v in want.items()}
    torch.testing.assert_close(pairs.gallery[0], want["ARface/frontal/m-001-1.bmp"])
    torch.testing.assert_close(pairs.probe[0], want["ARface/glass/m-001-8.bmp"])
    torch.testing.assert_close(pairs.probe[1], want["ARface/glass/w-002-8.bmp"])
    torch.testing.assert_close(pairs.gallery[2], torch.from_numpy(png).permute(2, 0, 1) / 255)
    assert pairs.genuine.tolist() == [True, False, False]
    # resized like image files, and a crop that is neither file nor HDF5 is named
    assert load_face_protocol(tmp_path / "glass.csv", size=4).gallery.shape == (3, 3, 4, 4)
    (tmp_path / "missing.csv").write_text("G,P,T\nARface/x/a.bmp,plain.png,1\n")
    with pytest.raises(FileNotFoundError, match="ARface_x_a.h5"):
        load_face_protocol(tmp_path / "missing.csv")
    # a crop without 'data', or not H × W × 3, is refused with its path
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        fh.create_dataset("image", data=png)
    (tmp_path / "bad.csv").write_text("G,P,T\nbad.bmp,plain.png,1\n")
    with pytest.raises(ValueError, match=r"bad\.h5 has no dataset 'data'"):
        load_face_protocol(tmp_path / "bad.csv")


# ---- issue 18: one image reader for every loader ---------------------------------------


def test_16_bit_gray_face_crops_are_scaled_not_clipped(tmp_path):
    """Item 9: a 16-bit gray PNG holds values up to 65535; the face loader used to clip
    them to white after an 8-bit conversion."""
    values = np.array([[0, 1000, 32768], [50000, 65535, 257]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g.png")
    Image.fromarray(values[::-1].copy()).save(tmp_path / "p.png")
    csv_path = _write_csv(tmp_path / "pairs.csv", ["G,P,T", "g.png,p.png,1"])
    pairs = load_face_protocol(csv_path)
    expected = torch.from_numpy(values.astype(np.float64) / 65535).float()
    for c in range(3):
        torch.testing.assert_close(pairs.gallery[0, c], expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(pairs.probe[0, 0], expected.flip(0), rtol=0, atol=1e-7)


def test_a_truncated_face_crop_is_named(tmp_path):
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "a.jpg", quality=90)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 2])
    csv_path = _write_csv(tmp_path / "pairs.csv", ["G,P,T", "a.jpg,a.jpg,1"])
    with pytest.raises(ValueError, match=r"a\.jpg.*truncated"):
        load_face_protocol(csv_path)


def test_load_sample_faces_padding_reframes_the_chips():
    plain = load_sample_faces("pose", size=160)
    assert torch.equal(load_sample_faces("pose", size=160, padding=0.25).probe, plain.probe)
    loose = load_sample_faces("pose", size=160, padding=0.35)  # face at 1.5/1.7 of the side
    assert (
        loose.probe.shape == plain.probe.shape and loose.genuine.tolist() == plain.genuine.tolist()
    )
    inner = round(160 * 1.5 / 1.7)  # 141 px, centred: 9 black rows/columns before, 10 after
    assert inner == 141
    assert loose.probe[..., :9, :].abs().max() == 0 and loose.probe[..., -10:].abs().max() == 0
    want = torch.nn.functional.interpolate(
        load_sample_faces("pose").probe, size=inner, mode="bilinear", antialias=True
    ).clamp(0, 1)
    torch.testing.assert_close(loose.probe[..., 9:150, 9:150], want)
    tight = load_sample_faces("pose", padding=0.1)  # resized to 188 px, the central 150 kept
    want = torch.nn.functional.interpolate(
        load_sample_faces("pose").probe, size=188, mode="bilinear", antialias=True
    ).clamp(0, 1)
    torch.testing.assert_close(tight.probe, want[..., 19:169, 19:169])
    with pytest.raises(ValueError, match="padding"):
        load_sample_faces("pose", padding=-1)
