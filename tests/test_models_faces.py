"""Face networks: the dlib ResNet port against dlib itself, and IResNet checkpoint loading.

The oracle is ``dlib-bin`` (test-only dependency): ``face_recognition_model_v1`` on the same
``.dat`` file computes the descriptor of an aligned 150 × 150 chip; chips are made at test time
from real photos with dlib's HOG detector, 5-point shape predictor and ``get_face_chip``.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fame_utils.models._wrapper import read_checkpoint
from fame_utils.models.dlib_resnet import add_prev, load_dlib_resnet, packaged_model_path
from fame_utils.models.faces import FACE_MODELS, IResNet, load_face_model

REPO = Path(__file__).resolve().parents[1]
DATA_CHIPS = REPO / "data" / "faces" / "chips"
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input means (0-255 RGB), docs/models.md


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_model():
    return load_face_model("dlib_resnet", device="cpu")


@pytest.fixture(scope="module")
def oracle_chips():
    """{name: (150, 150, 3) uint8 RGB chip} from real photos, plus two noise chips."""
    dlib = pytest.importorskip("dlib")
    from matplotlib import cbook
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        str(packaged_model_path("shape_predictor_5_face_landmarks.dat"))
    )

    def chip_of(img: np.ndarray) -> np.ndarray:
        dets = detector(img, 1)
        assert len(dets) >= 1, "dlib found no face"
        return dlib.get_face_chip(img, predictor(img, dets[0]), 150, 0.25)

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    half = Image.fromarray(hopper).resize((hopper.shape[1] // 2, hopper.shape[0] // 2))
    chips = {
        "hopper": chip_of(hopper),
        "hopper_mirrored": chip_of(np.ascontiguousarray(hopper[:, ::-1])),
        "hopper_half_size": chip_of(np.asarray(half)),
    }
    if DATA_CHIPS.is_dir():  # aligned chips shipped with the repository (face-data helper)
        for path in sorted(DATA_CHIPS.glob("*.png"))[:4]:
            chip = np.asarray(Image.open(path).convert("RGB"))
            if chip.shape == (150, 150, 3):
                chips[f"data:{path.stem}"] = chip
    rng = np.random.default_rng(0)
    for i in range(2):
        chips[f"noise{i}"] = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    return chips


def _output_shapes(model, modules: dict, x: torch.Tensor) -> dict:
    """Run ``model(x)`` and return {key: output shape} of each module in ``modules``."""
    shapes = {}

    def recorder(key):
        def hook(_module, _inputs, output):
            shapes[key] = tuple(output.shape)  # returns None: the output is left alone

        return hook

    hooks = [mod.register_forward_hook(recorder(key)) for key, mod in modules.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _to_tensor(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255.0 for c in chips])


# --------------------------------------------------------------------------------------------
# dlib ResNet: file parsing and the oracle
# --------------------------------------------------------------------------------------------


def test_loaded_file_matches_the_documented_architecture():
    net = load_dlib_resnet()
    assert net.input_mean == pytest.approx(DLIB_MEAN_RGB, abs=1e-4)
    assert net.input_size == 150
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 29
    stem = convs[0]
    assert (stem.out_channels, stem.kernel_size, stem.stride, stem.padding) == (
        32,
        (7, 7),
        (2, 2),
        (0, 0),
    )
    # every stride-2 conv is unpadded, every stride-1 conv is padded by 1
    for c in convs[1:]:
        assert c.padding == ((0, 0) if c.stride == (2, 2) else (1, 1))
    assert [len(level) for level in net.levels.values()] == [3, 4, 3, 3, 1]
    assert net.fc.weight.shape == (128, 256) and net.fc.bias is None
    assert sum(p.numel() for p in net.parameters()) == 5_614_592


def test_add_prev_zero_pads_to_the_larger_size():
    a = torch.arange(1 * 2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)
    b = torch.ones(1, 1, 4, 4)
    out = add_prev(a, b)
    expected = torch.zeros(1, 2, 4, 4)
    expected[:, :2, :3, :3] += a
    expected[:, :1] += 1.0
    assert torch.equal(out, expected)
    assert torch.equal(add_prev(b, a), expected)


def test_dlib_port_matches_dlib_on_real_chips(dlib_model, oracle_chips):
    dlib = pytest.importorskip("dlib")
    reference = dlib.face_recognition_model_v1(str(packaged_model_path()))
    names = list(oracle_chips)
    with torch.no_grad():
        ours = dlib_model(_to_tensor([oracle_chips[n] for n in names])).numpy()
    diffs = {}
    for i, name in enumerate(names):
        # overload for an already aligned 150×150 chip
        ref = np.asarray(reference.compute_face_descriptor(oracle_chips[name]))
        diffs[name] = float(np.abs(ours[i] - ref).max())
    print("max |ours - dlib| per chip:", diffs)
    assert max(diffs.values()) <= 1e-5, diffs
    assert len(names) >= 5


def test_dlib_embeddings_separate_faces_from_noise(dlib_model, oracle_chips):
    faces = [oracle_chips[n] for n in ("hopper", "hopper_mirrored", "hopper_half_size")]
    with torch.no_grad():
        e = dlib_model(_to_tensor([*faces, oracle_chips["noise0"]]))
    dist = torch.cdist(e, e)
    # same person (same photo, re-aligned / mirrored / resampled): well under dlib's 0.6
    assert dist[:3, :3].max() < 0.3
    assert dist[:3, 3].min() > 0.6


def test_wrapper_contract(dlib_model):
    m = dlib_model
    assert not m.training and m.input_size == 150 and m.embedding_size == 128
    mean, std = m.input_normalization
    assert mean == pytest.approx(tuple(v / 255 for v in DLIB_MEAN_RGB))
    assert std == pytest.approx((256 / 255,) * 3)
    with torch.no_grad():
        out = m(torch.rand(2, 3, 150, 150))
    shapes = _output_shapes(m, {"t": m.target_layer, **m.stages}, torch.rand(2, 3, 150, 150))
    assert out.shape == (2, 128)
    assert shapes["t"] == (2, 256, 2, 2)
    for key in m.stages:  # keys are the output resolution, incl. the 8 → 4 add_prev step
        side = int(key.split("x")[0])
        assert shapes[key][-2:] == (side, side)
    assert list(m.stages) == ["35x35", "17x17", "8x8", "4x4", "2x2"]


def test_wrong_chip_size_raises(dlib_model):
    with pytest.raises(ValueError, match="150×150"):
        dlib_model(torch.rand(1, 3, 112, 112))


def test_input_gradient_is_finite_nonzero_and_matches_finite_differences(dlib_model, oracle_chips):
    m = copy.deepcopy(dlib_model).double()
    x = _to_tensor([oracle_chips["hopper"]]).double()
    ref = m(_to_tensor([oracle_chips["hopper_mirrored"]]).double()).detach()
    x.requires_grad_(True)

    def score(inp):
        return F.cosine_similarity(m(inp), ref).sum()

    (grad,) = torch.autograd.grad(score(x), x)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    v = torch.randn_like(x, generator=torch.Generator().manual_seed(1))
    eps = 1e-7  # tiny step: ReLU / max-pool kinks are rarely crossed
    with torch.no_grad():
        numeric = (score(x + eps * v) - score(x - eps * v)) / (2 * eps)
    assert (grad * v).sum().item() == pytest.approx(numeric.item(), rel=1e-4, abs=1e-8)


def test_batched_equals_one_at_a_time(dlib_model, oracle_chips):
    x = _to_tensor([oracle_chips[n] for n in ("hopper", "noise0", "hopper_half_size")])
    with torch.no_grad():
        batched = dlib_model(x)
        single = torch.cat([dlib_model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# IResNet
# --------------------------------------------------------------------------------------------


def _random_iresnet18() -> torch.nn.Module:
    """IResNet-18 with random weights *and* non-trivial batch-norm statistics."""
    torch.manual_seed(0)
    net = IResNet(18)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                if mod.affine:
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.1, 0.1)
    return net.eval()


def test_iresnet_checkpoints_load_plain_and_from_lightning(tmp_path):
    net = _random_iresnet18()
    state = net.state_dict()
    lightning = {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 3}
    lightning["state_dict"]["head.kernel"] = torch.randn(512, 10)  # training head: dropped
    torch.save(lightning, tmp_path / "lightning.ckpt")
    torch.save(state, tmp_path / "plain.pth")

    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        expected = net((x - 0.5) / 0.5)
    for ckpt in (tmp_path / "lightning.ckpt", tmp_path / "plain.pth", lightning):
        model = load_face_model("iresnet18", checkpoint=ckpt, device="cpu")
        assert model.input_size == 112 and model.embedding_size == 512
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    # the 7 × 7 last unit is the target layer; stages keyed by resolution
    seen = _output_shapes(model, model.stages, x)
    assert {k: tuple(s[1:]) for k, s in seen.items()} == {
        "56x56": (64, 56, 56),
        "28x28": (128, 28, 28),
        "14x14": (256, 14, 14),
        "7x7": (512, 7, 7),
    }
    assert model.target_layer is model.stages["7x7"]


def test_adaface_flips_to_bgr_inside():
    net = _random_iresnet18()
    model = load_face_model("iresnet18", checkpoint=net.state_dict(), device="cpu")
    x = torch.rand(2, 3, 112, 112)

    def layers(v):  # the network's layers without its flip
        return net.output_layer(net.body(net.input_layer((v - 0.5) / 0.5)))

    with torch.no_grad():
        torch.testing.assert_close(model(x), layers(x.flip(1)), atol=1e-6, rtol=1e-6)
        assert not torch.allclose(model(x), layers(x), atol=1e-3)


def test_iresnet_without_checkpoint_says_what_to_pass():
    with pytest.raises(ValueError) as info:
        load_face_model("iresnet50")
    msg = str(info.value)
    assert "checkpoint=" in msg and "AdaFace" in msg and "github.com/mk-minchul/AdaFace" in msg


def test_iresnet_wrong_keys_are_listed():
    state = _random_iresnet18().state_dict()
    state.pop("body.2.res_layer.1.weight")
    state["not_a_layer.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="does not fit iresnet18") as info:
        load_face_model("iresnet18", checkpoint=state)
    msg = str(info.value)
    assert "body.2.res_layer.1.weight" in msg and "not_a_layer.weight" in msg
    with pytest.raises(ValueError, match="Missing key.*body.9"):  # wrong depth
        load_face_model("iresnet34", checkpoint=_random_iresnet18().state_dict())


def test_pickled_hyperparameters_need_weights_only_false(tmp_path):
    state = _random_iresnet18().state_dict()
    ckpt = {
        "state_dict": {"model." + k: v for k, v in state.items()},
        "hyper_parameters": argparse.Namespace(arch="ir_18"),
    }
    torch.save(ckpt, tmp_path / "adaface.ckpt")
    with pytest.raises(ValueError, match="weights_only=False"):
        load_face_model("iresnet18", checkpoint=tmp_path / "adaface.ckpt")
    loaded = read_checkpoint(tmp_path / "adaface.ckpt", weights_only=False)
    assert loaded.keys() == state.keys()


def test_iresnet_parameter_counts_and_101_alias():
    def count(depth):
        with torch.device("meta"):
            return sum(p.numel() for p in IResNet(depth).parameters())

    def by_hand(units):  # conv/BN/PReLU arithmetic of the documented layout
        total = 3 * 64 * 9 + 2 * 64 + 64  # stem conv, BN, PReLU
        cin = 64
        for width, n in zip((64, 128, 256, 512), units):
            for j in range(n):
                total += 2 * cin + cin * width * 9 + 2 * width + width + width * width * 9
                total += 2 * width
                if j == 0 and cin != width:
                    total += cin * width + 2 * width
                cin = width
        return total + 2 * 512 + 512 * 49 * 512 + 512  # BN2d, Linear; BN1d without γ, β

    assert count(50) == by_hand((3, 4, 14, 3))
    assert count(101) == count(100) == by_hand((3, 13, 30, 3))
    assert {"iresnet101", "iresnet100", "dlib_resnet"} <= set(FACE_MODELS)


def test_unknown_names_and_checkpoints():
    with pytest.raises(ValueError, match="choose one of"):
        load_face_model("vggface")
    for name in ("dlib_resnet", "facenet"):  # the embedded networks read their own packages
        with pytest.raises(ValueError, match=f"{name} takes no checkpoint="):
            load_face_model(name, checkpoint="other.dat")
