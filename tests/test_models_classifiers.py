"""ImageNet classifiers: real weights on real images, checkpoints, errors, the wrapper contract."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

from fame_utils.models.classifiers import (
    CLASSIFIERS,
    Conv2dSame,
    convert_packaged_state_dict,
    load_classifier,
    packaged_weights_path,
)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OBJECTS = Path(__file__).resolve().parents[1] / "data" / "objects"

# file -> ImageNet classes accepted as top-1 (the cat is ambiguous between three cat classes)
EXPECTED_TOP1 = {
    "coffee.png": {967},  # espresso
    "squirrel_cls.jpg": {335},  # fox squirrel
    "baboon.jpg": {372},  # baboon
    "bus.jpg": {654},  # minibus
    "chelsea.png": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "monarch.png": {323},  # monarch butterfly
    "orange.jpg": {950},  # orange
}

PREPROCESS = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])


def _pattern(h: int, w: int) -> torch.Tensor:
    """A deterministic smooth colour image (1, 3, h, w) in [0, 1]."""
    yy = torch.linspace(0, 1, h).view(h, 1)
    xx = torch.linspace(0, 1, w).view(1, w)
    r = 0.5 + 0.5 * torch.sin(12.0 * xx + 5.0 * yy)
    g = 0.5 + 0.5 * torch.cos(9.0 * yy * yy - 4.0 * xx)
    b = (xx * yy) ** 0.5
    return torch.stack([r, g, b]).unsqueeze(0)


@pytest.fixture(scope="module")
def lite0():
    return load_classifier("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def object_probs(lite0):
    """Softmax probabilities (1000,) per available object image, one batched forward."""
    present = [n for n in EXPECTED_TOP1 if (OBJECTS / n).is_file()]
    if not present:
        return {}
    x = torch.stack([PREPROCESS(Image.open(OBJECTS / n).convert("RGB")) for n in present])
    with torch.no_grad():
        probs = lite0(x).softmax(1)
    return dict(zip(present, probs))


# ---------------------------------------------------------------- real weights, real images


@pytest.mark.parametrize("filename", list(EXPECTED_TOP1))
def test_lite0_top1_on_real_images(filename, object_probs, lite0):
    if filename not in object_probs:
        pytest.skip(f"{OBJECTS / filename} is absent (shipped by the data/objects set)")
    p = object_probs[filename]
    top1 = int(p.argmax())
    assert top1 in EXPECTED_TOP1[filename], (
        f"{filename}: top-1 {top1} {lite0.categories[top1]!r} (p={float(p.max()):.3f})"
    )


def test_lite0_espresso_is_confident(object_probs):
    if "coffee.png" not in object_probs:
        pytest.skip(f"{OBJECTS / 'coffee.png'} is absent")
    assert float(object_probs["coffee.png"][967]) > 0.9


def test_wrapper_preprocessing_attributes(lite0):
    assert (lite0.resize_size, lite0.input_size) == (256, 224)  # as PREPROCESS


def test_lite0_matches_timm_reference_logits(lite0):
    """Top-5 logits recorded from timm's tf_efficientnet_lite0 loaded with the same weights
    (independent implementation; timm is not a dependency, so the values are frozen here).
    The odd 225 x 231 size exercises the asymmetric TensorFlow "same" padding."""
    reference = {
        (224, 224): ([885, 530, 73, 604, 644], [6.5792, 4.5313, 4.5302, 4.4420, 4.4095]),
        (225, 231): ([885, 782, 604, 644, 59], [5.4789, 4.8274, 4.7334, 4.6197, 4.4287]),
    }
    for (h, w), (idx, vals) in reference.items():
        with torch.no_grad():
            z = lite0(_pattern(h, w))[0]
        v, i = z.topk(5)
        assert i.tolist() == idx
        torch.testing.assert_close(v, torch.tensor(vals), atol=2e-3, rtol=0)


def test_lite0_normalisation_is_127_128(lite0):
    """The wrapper feeds the network (pixel_0_255 - 127) / 128."""
    x = _pattern(64, 64)
    with torch.no_grad():
        expected = lite0.net((x * 255 - 127) / 128)
        # (x - 127/255) / (128/255) and (255 x - 127) / 128 differ only by float rounding
        torch.testing.assert_close(lite0(x), expected, atol=1e-4, rtol=1e-4)
    assert lite0.input_normalization == ((127 / 255,) * 3, (128 / 255,) * 3)


# ---------------------------------------------------------------- architecture pieces


def test_same_padding_hand_computed():
    """4x4 input, 3x3 ones kernel, stride 2: TF pads 1 pixel at the bottom/right only."""
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x)
    expected = torch.tensor(
        [
            [x[0, 0, 0:3, 0:3].sum(), x[0, 0, 0:3, 2:4].sum()],
            [x[0, 0, 2:4, 0:3].sum(), x[0, 0, 2:4, 2:4].sum()],
        ]
    )
    torch.testing.assert_close(y[0, 0], expected)
    for n in (1, 5, 7, 224, 225):  # output side is ceil(n / stride)
        assert conv(torch.zeros(1, 1, n, n + 1)).shape[-2:] == ((n + 1) // 2, (n + 2) // 2)
    conv5 = Conv2dSame(1, 1, 5, stride=1, bias=False)
    assert conv5(torch.zeros(1, 1, 9, 6)).shape[-2:] == (9, 6)


def test_packaged_key_mapping():
    sd = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    assert len(sd) == 296
    mapped = convert_packaged_state_dict(sd)
    assert mapped["stem.conv.weight"] is sd["_conv_stem.weight"]
    assert mapped["head.bn.running_var"] is sd["_bn1.running_var"]
    assert mapped["blocks.3.depthwise.conv.weight"] is sd["_blocks.3._depthwise_conv.weight"]
    assert mapped["blocks.0.project.bn.bias"] is sd["_blocks.0._bn2.bias"]
    assert convert_packaged_state_dict(mapped) == mapped  # our naming passes through
    with pytest.raises(ValueError, match=r"Unexpected key\(s\) in state_dict: \"_foo.weight\""):
        load_classifier("efficientnet_lite0", checkpoint={**sd, "_foo.weight": torch.zeros(1)})


# ---------------------------------------------------------------- wrapper contract


def test_lite0_attributes_and_eval_mode(lite0):
    assert lite0.categories[967] == "espresso" and len(lite0.categories) == 1000
    assert lite0.categories[335] == "fox squirrel"
    assert (lite0.input_size, lite0.resize_size) == (224, 256)
    assert not any(m.training for m in lite0.modules())
    assert lite0.target_layer is lite0.net.head
    assert list(lite0.stages) == ["112x112", "56x56", "28x28", "14x14", "7x7"]
    assert lite0.stages["7x7"] is lite0.target_layer
    # layers are referenced by name, not registered twice
    assert len(lite0.state_dict()) == 296
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert next(load_classifier().parameters()).device.type == expected.type


def _stage_sides(model, size=224):
    sides = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, k=k: sides.__setitem__(k, tuple(out.shape)))
        for k, m in model.stages.items()
    ]
    hooks.append(
        model.target_layer.register_forward_hook(
            lambda _m, _i, out: sides.__setitem__("target", tuple(out.shape))
        )
    )
    try:
        with torch.no_grad():
            model(torch.full((1, 3, size, size), 0.5))
    finally:
        for h in hooks:
            h.remove()
    return sides


def test_lite0_stage_resolutions(lite0):
    sides = _stage_sides(lite0)
    for key in ("112x112", "56x56", "28x28", "14x14", "7x7"):
        n = int(key.split("x")[0])
        assert sides[key][-2:] == (n, n), key
    assert sides["target"] == (1, 1280, 7, 7)


def test_lite0_gradient_batch_and_any_size(lite0):
    x = torch.stack([_pattern(224, 224)[0], _pattern(224, 224)[0].flip(-1)])
    x.requires_grad_(True)
    logits = lite0(x)
    assert logits.shape == (2, 1000)
    (grad,) = torch.autograd.grad(logits[:, 967].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().amax() > 0
    with torch.no_grad():
        singles = torch.cat([lite0(x[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(logits.detach(), singles, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        assert lite0(_pattern(97, 130)).shape == (1, 1000)


# ---------------------------------------------------------------- ResNets


def _random_resnet18():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def _reference_logits(net, x):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x - mean) / std)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "in_memory"])
def test_resnet_checkpoint(tmp_path, wrap):
    net = _random_resnet18()
    sd = net.state_dict()
    payload = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "in_memory": sd,
    }[wrap]
    if wrap == "in_memory":  # nothing to recognise: the version is named
        model = load_classifier("resnet18", checkpoint=payload, weights="IMAGENET1K_V1")
    else:  # torchvision's file name for ResNet-18 V1
        checkpoint = tmp_path / "resnet18-f37072fd.pth"
        torch.save(payload, checkpoint)
        model = load_classifier("resnet18", checkpoint=checkpoint, device="cpu")
    x = _pattern(224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_logits(net, x), atol=1e-6, rtol=1e-6)
    assert model.target_layer is model.net.layer4[-1]
    assert model.input_normalization == (IMAGENET_MEAN, IMAGENET_STD)
    assert (model.input_size, model.resize_size) == (224, 256)


def test_resnet_attributes_and_stages(tmp_path):
    model = load_classifier(
        "resnet18", checkpoint=_random_resnet18().state_dict(), weights="IMAGENET1K_V1"
    )
    assert not any(m.training for m in model.modules())
    assert list(model.stages) == ["56x56", "28x28", "14x14", "7x7"]
    sides = _stage_sides(model)
    for key in model.stages:
        n = int(key.split("x")[0])
        assert sides[key][-2:] == (n, n), key
    assert sides["target"] == (1, 512, 7, 7)
    assert len(model.categories) == 1000


def test_resnet_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = _random_resnet18()
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    assert cache.parent.parent == tmp_path
    cache.mkdir(parents=True)
    torch.save(net.state_dict(), cache / "resnet18-f37072fd.pth")
    model = load_classifier("resnet18", device="cpu")
    x = _pattern(224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_logits(net, x), atol=1e-6, rtol=1e-6)


def test_resnet_missing_weights_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    attempts = []

    def no_network(url, dst, *args, **kwargs):
        attempts.append(url)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(FileNotFoundError) as info:
        load_classifier("resnet50", device="cpu")
    msg = str(info.value)
    url = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    assert attempts == [url]
    cache = os.path.join(str(tmp_path), "hub", "checkpoints")
    assert url in msg and os.path.join(cache, "resnet50-11ad3fa6.pth") in msg
    assert "IMAGENET1K_V2" in msg and "network blocked" in msg


def test_bad_names_and_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="resnet101") as info:
        load_classifier("vgg16")
    assert all(n in str(info.value) for n in CLASSIFIERS)
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_classifier("resnet18", weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="torchvision models only"):
        load_classifier("efficientnet_lite0", weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        load_classifier("resnet50", checkpoint=tmp_path / "unused.pth", weights="V2")
    with pytest.raises(ValueError, match="does not fit"):
        load_classifier(
            "resnet34", checkpoint=_random_resnet18().state_dict(), weights="IMAGENET1K_V1"
        )
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_classifier("resnet18", checkpoint=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        load_classifier(
            "resnet18", checkpoint=_random_resnet18().state_dict(), weights="IMAGENET1K_V1"
        )(torch.zeros(3, 224, 224))


def test_lite0_checkpoint_roundtrip(lite0, tmp_path):
    """checkpoint= also works for Lite0, in the package's key naming or ours."""
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": lite0.net.state_dict()}, path)
    again = load_classifier("efficientnet_lite0", checkpoint=path, device="cpu")
    ours, theirs = again.state_dict(), lite0.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    packaged = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    with torch.no_grad():  # a perturbed package-format dict is really used
        packaged["_fc.bias"] = packaged["_fc.bias"] + 1.0
    shifted = load_classifier("efficientnet_lite0", checkpoint=packaged, device="cpu")
    x = _pattern(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(shifted(x), lite0(x) + 1.0, atol=1e-5, rtol=0)


def test_target_layer_works_with_pytorch_grad_cam(lite0):
    """The contract's target_layer feeds pytorch-grad-cam with its default settings
    (which needs activations that require grad even when the input does not)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=lite0, target_layers=[lite0.target_layer]) as cam:
        heat = cam(input_tensor=_pattern(224, 224), targets=[ClassifierOutputTarget(885)])
    assert heat.shape == (1, 224, 224)
    assert heat.max() > 0 and (heat >= 0).all()
    lite0.zero_grad(set_to_none=True)  # grad-cam's backward() filled .grad of the shared model


def test_resnet_corrupt_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="delete the file"):
        load_classifier("resnet18", device="cpu")


# ------------------------------------------- torchvision versions recognised by file name


def _tv_weights():
    import torchvision.models as tvm

    from fame_utils.models.classifiers import TORCHVISION_CLASSIFIERS

    return [(name, w) for name in TORCHVISION_CLASSIFIERS for w in tvm.get_model_weights(name)]


def test_every_published_file_name_is_recognised():
    """Each file name in the installed torchvision's weights enums maps back to its
    architecture and version, in any folder; any other name is not recognised."""
    from fame_utils.models.classifiers import weights_from_file_name

    pairs = _tv_weights()
    assert len(pairs) >= 13
    for name, w in pairs:
        file = os.path.basename(w.url)
        assert weights_from_file_name(file) == (name, w.name), file
        assert weights_from_file_name(Path("/some/dir") / file) == (name, w.name)
    assert weights_from_file_name("resnet50-0676ba61-copy.pth") is None
    assert weights_from_file_name("resnet50.pth") is None
    assert weights_from_file_name("resnet50-00000000.pth") is None


@pytest.mark.parametrize(
    "file, resize",
    [
        ("resnet18-f37072fd.pth", 256),
        ("resnet50-0676ba61.pth", 256),
        ("resnet50-11ad3fa6.pth", 232),
    ],
)
def test_resnet_resize_from_file_name(tmp_path, file, resize):
    """torchvision's V1 files get Resize 256 and V2 files Resize 232 (hand-typed from
    torchvision's documentation), with no weights= given."""
    import torchvision.models as tvm

    arch = file.split("-")[0]
    torch.manual_seed(0)
    net = getattr(tvm, arch)(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / file)
    model = load_classifier(arch, checkpoint=tmp_path / file, device="cpu")
    assert (model.input_size, model.resize_size, model.interpolation) == (224, resize, "bilinear")
    assert model.weights == ("IMAGENET1K_V2" if resize == 232 else "IMAGENET1K_V1")
    img = Image.fromarray((_pattern(300, 400)[0].permute(1, 2, 0) * 255).byte().numpy())
    expected = T.Compose([T.Resize(resize), T.CenterCrop(224), T.ToTensor()])(img)
    preprocess = T.Compose([T.Resize(model.resize_size), T.CenterCrop(model.input_size)])
    torch.testing.assert_close(T.ToTensor()(preprocess(img)), expected, atol=0, rtol=0)
    x = _pattern(224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_logits(net, x), atol=1e-5, rtol=1e-5)


def test_unrecognised_checkpoint_needs_weights(tmp_path):
    sd = _random_resnet18().state_dict()
    torch.save(sd, tmp_path / "my_resnet18.pth")
    with pytest.raises(ValueError, match="weights=") as info:
        load_classifier("resnet18", checkpoint=tmp_path / "my_resnet18.pth", device="cpu")
    msg = str(info.value)
    assert "my_resnet18.pth" in msg and "IMAGENET1K_V1" in msg and "Resize 256" in msg
    with pytest.raises(ValueError, match="in-memory"):
        load_classifier("resnet18", checkpoint=sd, device="cpu")
    model = load_classifier(
        "resnet18", checkpoint=tmp_path / "my_resnet18.pth", weights="IMAGENET1K_V1"
    )
    assert model.resize_size == 256
    # a torchvision name of another architecture or another version is refused
    torch.save(sd, tmp_path / "resnet50-11ad3fa6.pth")
    with pytest.raises(ValueError, match="resnet50"):
        load_classifier("resnet18", checkpoint=tmp_path / "resnet50-11ad3fa6.pth")
    with pytest.raises(ValueError, match="disagrees"):
        load_classifier(
            "resnet50", checkpoint=tmp_path / "resnet50-11ad3fa6.pth", weights="IMAGENET1K_V1"
        )


def test_unrecognised_resnet50_v2_by_weights(tmp_path):
    """An unrecognised ResNet-50 file with weights='IMAGENET1K_V2' gets 232."""
    import torchvision.models as tvm

    torch.save(tvm.resnet50(weights=None).state_dict(), tmp_path / "paper.pth")
    with pytest.raises(ValueError, match="IMAGENET1K_V2.*Resize 232"):
        load_classifier("resnet50", checkpoint=tmp_path / "paper.pth")
    model = load_classifier("resnet50", checkpoint=tmp_path / "paper.pth", weights="IMAGENET1K_V2")
    assert model.resize_size == 232


def _broken_files(tmp_path) -> dict[str, Path]:
    good = tmp_path / "good.pth"
    torch.save(_random_resnet18().state_dict(), good)
    files = {
        "empty": tmp_path / "resnet18-f37072fd.pth",
        "garbage": tmp_path / "garbage" / "resnet18-f37072fd.pth",
        "truncated": tmp_path / "truncated" / "resnet18-f37072fd.pth",
    }
    for f in files.values():
        f.parent.mkdir(exist_ok=True)
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(b"<html>404 Not Found</html>")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return files


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_corrupt_checkpoint_files_are_named(tmp_path, kind):
    """Empty and corrupt files give a ValueError that names the file, not torch's advice to
    use weights_only=False nor a bare EOFError; the face loader shares the reader."""
    from fame_utils.models.faces import load_face_model

    path = _broken_files(tmp_path)[kind]
    with pytest.raises(ValueError) as info:
        load_classifier("resnet18", checkpoint=path, device="cpu")
    msg = str(info.value)
    assert str(path) in msg and "weights_only" not in msg
    assert ("empty" if kind == "empty" else "again") in msg
    with pytest.raises(ValueError, match="again") as info:
        load_face_model("iresnet18", checkpoint=path, device="cpu")
    assert str(path) in str(info.value)


@pytest.mark.slow
def test_vit_b_16_from_torchvision_file_names(tmp_path):
    """A vit_b_16 state dict saved under torchvision's names loads with that version's
    preprocessing: V1 Resize 256 bilinear, SWAG linear-probe Resize 224 bicubic (both 224 px);
    the wrapper computes the plain network, and exposes blocks, grid and the CAM layer."""
    import torchvision.models as tvm

    torch.manual_seed(0)
    net = tvm.vit_b_16(weights=None).eval()
    v1 = tmp_path / "vit_b_16-c867db91.pth"
    torch.save(net.state_dict(), v1)
    swag = tmp_path / "vit_b_16_lc_swag-4e70ced5.pth"
    os.link(v1, swag)  # same tensors, second name, no second 350 MB write
    model = load_classifier("vit_b_16", checkpoint=v1, device="cpu")
    assert (model.input_size, model.resize_size, model.interpolation) == (224, 256, "bilinear")
    assert model.weights == "IMAGENET1K_V1"
    assert (model.patch_size, model.token_grid) == (16, (14, 14))
    assert list(model.stages) == [f"block{i}" for i in range(1, 13)]
    assert model.target_layer is model.net.encoder.layers[-1].ln_1
    x = _pattern(224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_logits(net, x), atol=1e-4, rtol=1e-4)
        tokens = []
        hook = model.stages["block1"].register_forward_hook(lambda m, i, o: tokens.append(o))
        model(x)
        hook.remove()
    assert tokens[0].shape == (1, 1 + 14 * 14, 768)
    lc = load_classifier("vit_b_16", checkpoint=swag, device="cpu")
    assert (lc.input_size, lc.resize_size, lc.interpolation) == (224, 224, "bicubic")
    with pytest.raises(ValueError, match="IMAGENET1K_SWAG_E2E_V1"):
        load_classifier("vit_b_16", checkpoint=net.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, tag, size, resize, mode, grid",
    [
        ("vit_b_32", "IMAGENET1K_V1", 224, 256, "bilinear", (7, 7)),
        ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1", 384, 384, "bicubic", (24, 24)),
    ],
)
def test_vit_versions_by_weights_tag(name, tag, size, resize, mode, grid):
    """weights= picks the preprocessing and, for SWAG end-to-end weights, the input size the
    network is built for (its position embedding has one entry per patch at 384 px)."""
    import torchvision.models as tvm

    torch.manual_seed(0)
    net = getattr(tvm, name)(weights=None, image_size=size).eval()
    model = load_classifier(name, checkpoint=net.state_dict(), weights=tag, device="cpu")
    assert (model.input_size, model.resize_size, model.interpolation) == (size, resize, mode)
    assert model.token_grid == grid and model.weights == tag
    x = _pattern(size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_logits(net, x), atol=1e-4, rtol=1e-4)
    if size != 224:  # a 224 px network's weights do not fit the 384 px version
        with pytest.raises(ValueError, match="pos_embedding"):
            load_classifier(
                name, checkpoint=getattr(tvm, name)(weights=None).state_dict(), weights=tag
            )


# ------------------------------------------------------- EfficientNet-Lite1 / Lite2

# files each of Lite1 and Lite2 gets right at its own preprocessing (measured: Lite1 12 of
# the 20 labelled bundled images, Lite2 11; Lite0 12)
LITE12_TOP1 = {
    "coffee.png": {967},  # espresso
    "squirrel_cls.jpg": {335},  # fox squirrel
    "baboon.jpg": {372},  # baboon
    "monarch.png": {323},  # monarch butterfly
    "orange.jpg": {950},  # orange
}


@pytest.fixture(scope="module", params=["efficientnet_lite1", "efficientnet_lite2"])
def lite12(request):
    return load_classifier(request.param, device="cpu")


def test_lite12_top1_on_real_images(lite12):
    present = [n for n in LITE12_TOP1 if (OBJECTS / n).is_file()]
    if not present:
        pytest.skip(f"no object images in {OBJECTS}")
    size = (lite12.resize_size, lite12.input_size)
    preprocess = T.Compose([T.Resize(size[0]), T.CenterCrop(size[1]), T.ToTensor()])
    x = torch.stack([preprocess(Image.open(OBJECTS / n).convert("RGB")) for n in present])
    assert x.shape[-1] == lite12.input_size
    with torch.no_grad():
        top1 = lite12(x).argmax(1).tolist()
    wrong = [(n, t, lite12.categories[t]) for n, t in zip(present, top1) if t not in LITE12_TOP1[n]]
    assert not wrong, f"{lite12.name}: wrong top-1 {wrong}"


def test_lite12_layout_and_preprocessing(lite12):
    sizes = {"efficientnet_lite1": (240, 272), "efficientnet_lite2": (260, 292)}
    assert (lite12.input_size, lite12.resize_size) == sizes[lite12.name]
    assert len(lite12.net.blocks) == 21 and lite12.target_layer is lite12.net.head
    assert lite12.input_normalization == ((127 / 255,) * 3, (128 / 255,) * 3)
    last = 352 if lite12.name == "efficientnet_lite2" else 320
    assert lite12.net.blocks[-1].project.conv.out_channels == last
    sides = _stage_sides(lite12)  # keys name the side at a 224 input
    for key in ("112x112", "56x56", "28x28", "14x14", "7x7"):
        n = int(key.split("x")[0])
        assert sides[key][-2:] == (n, n), (key, sides[key])


def test_lite12_checkpoint_of_another_variant_is_refused():
    lite0_state = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    with pytest.raises(ValueError, match="EfficientNet-Lite1"):
        load_classifier("efficientnet_lite1", checkpoint=lite0_state, device="cpu")
