"""Vision Transformers: the shipped digits ViT, the digits data, CAMs on tokens, FAME on strokes."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from fame_utils import ClassLogit
from fame_utils.baselines.cam import GradCAM, HiResCAM
from fame_utils.core import FameConfig, run_fame
from fame_utils.data.digits import (
    DIGITS_BLUR,
    STROKE_THRESHOLD,
    load_digits_images,
)
from fame_utils.metrics.localization import mask_share, mass_on_mask
from fame_utils.models.classifiers import load_classifier, tiny_vit_digits_path
from fame_utils.objectives import vit_reshape_transform


@pytest.fixture(scope="module")
def vit():
    return load_classifier("tiny_vit_digits", device="cpu")


@pytest.fixture(scope="module")
def test_split():
    return load_digits_images("test")


# ------------------------------------------------------------------------- digits data


def test_digits_split_is_fixed_disjoint_and_complete():
    train, test = load_digits_images("train").indices, load_digits_images("test").indices
    assert (len(train), len(test)) == (1400, 397)
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(1797))
    assert torch.equal(load_digits_images("test").indices, test)  # the same permutation
    assert torch.equal(load_digits_images(limit=5).indices, test[:5])
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_digits_images("val")


def test_digits_images_hand_computed_pixels(test_split):
    """Pixels of the 32 px image against bilinear upsampling (align_corners=False) by hand,
    and the stroke mask against the threshold."""
    from sklearn.datasets import load_digits

    raw = torch.as_tensor(load_digits().images[int(test_split.indices[0])]) / 16.0
    img = test_split.images[0]
    assert img.shape == (3, 32, 32) and torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])
    # output pixel i samples source coordinate (i + 0.5)/4 − 0.5, clamped at the border
    assert img[0, 0, 0] == pytest.approx(float(raw[0, 0]), abs=1e-6)
    # pixel (2, 6): rows at 0.125 between 0 and 1, columns at 1.125 between 1 and 2
    r, c = 0.125, 0.125
    expected = (
        (1 - r) * (1 - c) * raw[0, 1]
        + (1 - r) * c * raw[0, 2]
        + r * (1 - c) * raw[1, 1]
        + r * c * raw[1, 2]
    )
    assert img[0, 2, 6] == pytest.approx(float(expected), abs=1e-6)
    assert torch.equal(test_split.strokes, test_split.images[:, 0] > STROKE_THRESHOLD)
    assert 0 <= float(test_split.images.min()) and float(test_split.images.max()) <= 1
    share = mask_share(test_split.strokes)
    assert 0.15 < float(share.min()) and float(share.max()) < 0.5
    assert torch.equal(load_digits_images(limit=5).labels, test_split.labels[:5])
    with pytest.raises(ValueError, match="limit"):
        load_digits_images(limit=0)


# ------------------------------------------------------------------------- the shipped ViT


def test_tiny_vit_reproduces_its_recorded_accuracy(vit, test_split):
    record = json.loads(tiny_vit_digits_path().with_suffix(".json").read_text())
    assert hashlib.sha256(tiny_vit_digits_path().read_bytes()).hexdigest() == record["sha256"]
    assert record["split"]["test"] == len(test_split) and record["training"]["seed"] == 0
    with torch.no_grad():
        correct = int((vit(test_split.images).argmax(1) == test_split.labels).sum())
    assert abs(correct - record["test_correct"]) <= 1  # a near-tie may flip on other BLAS
    assert record["test_accuracy"] >= 0.95
    assert vit.training_record == record


def test_tiny_vit_wrapper_contract(vit):
    assert (vit.input_size, vit.resize_size, vit.patch_size, vit.token_grid) == (
        32,
        None,
        4,
        (8, 8),
    )
    assert vit.categories == [str(d) for d in range(10)]
    assert vit.input_normalization == ((0.5,) * 3, (0.5,) * 3)
    assert list(vit.stages) == ["block1", "block2", "block3", "block4"]
    assert vit.target_layer is vit.net.encoder.layers[-1].ln_1
    assert not any(m.training for m in vit.modules())
    x = torch.rand(2, 3, 32, 32)
    seen = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.shape))
        for k, m in vit.stages.items()
    ]
    with torch.no_grad():
        out = vit(x)
        torch.testing.assert_close(out, vit.net((x - 0.5) / 0.5))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 10) and all(s == (2, 65, 64) for s in seen.values())
    with pytest.raises(ValueError, match="torchvision models only"):
        load_classifier("tiny_vit_digits", weights="IMAGENET1K_V1")


# ------------------------------------------------------------------------- CAMs on tokens


def test_vit_reshape_transform_hand_case():
    """Token 1 + r·w + c lands at grid cell (r, c); the class token is dropped."""
    h, w = 2, 3
    t = torch.arange(1 + h * w, dtype=torch.float32)
    tokens = torch.stack([t, 10 * t], dim=-1).unsqueeze(0).repeat(2, 1, 1)  # (2, 7, 2)
    grid = vit_reshape_transform(tokens, (h, w))
    assert grid.shape == (2, 2, h, w)
    for r in range(h):
        for c in range(w):
            assert grid[1, 0, r, c] == 1 + r * w + c and grid[1, 1, r, c] == 10 * (1 + r * w + c)
    square = torch.randn(1, 1 + 16, 5)
    assert torch.equal(vit_reshape_transform(square)[0, :, 1, 2], square[0, 1 + 4 + 2])
    with pytest.raises(ValueError, match="token_grid"):
        vit_reshape_transform(torch.zeros(1, 7, 2), (3, 3))
    with pytest.raises(ValueError, match=r"\(B, 1 \+ h\*w, C\)"):
        vit_reshape_transform(torch.zeros(7, 2))


def test_gradcam_on_tiny_vit_matches_hand_computed(vit, test_split):
    """Grad-CAM through pytorch-grad-cam on the token grid equals Grad-CAM computed by hand
    from the target layer's tokens: ReLU(Σ_c ᾱ_c A_c) on the 8 × 8 patch grid (ᾱ = mean
    gradient over the patch tokens), min-max scaled, bilinearly upsampled, min-max again."""
    x, y = test_split.images[:4], test_split.labels[:4]
    maps = GradCAM()(vit, x, ClassLogit(y)).positive
    acts = []
    hook = vit.target_layer.register_forward_hook(lambda m, i, o: acts.append(o))
    logits = vit(x)
    hook.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), acts[0])
    a, g = acts[0][:, 1:].detach(), grads[:, 1:]
    cam = (a * g.mean(1, keepdim=True)).sum(-1).clamp(min=0).reshape(-1, 1, 8, 8)

    def minmax(t):
        t = t - t.amin((1, 2, 3), keepdim=True)
        return t / (1e-7 + t.amax((1, 2, 3), keepdim=True))

    up = F.interpolate(minmax(cam), size=(32, 32), mode="bilinear", align_corners=False)
    expected = minmax(up.clamp(min=0))[:, 0]
    assert maps.shape == (4, 32, 32)
    torch.testing.assert_close(maps, expected, atol=1e-4, rtol=0)
    # a transposed fold would give another map
    assert not torch.allclose(maps, expected.transpose(1, 2), atol=1e-2)
    vit.zero_grad(set_to_none=True)


def test_hirescam_runs_on_vit(vit, test_split):
    maps = HiResCAM()(vit, test_split.images[:3], ClassLogit(test_split.labels[:3])).positive
    assert maps.shape == (3, 32, 32)
    assert torch.all(maps.flatten(1).amax(1) > 0.99) and float(maps.min()) >= 0


# ------------------------------------------------------------------------- FAME on strokes


def test_fame_on_tiny_vit_puts_mass_on_strokes(vit, test_split):
    """FAME's class-logit maps (30 iterations, the blur scaled to 32 px) put more of their
    mass on stroke pixels than the strokes' area share.

    Measured (30 iterations, σ 1.1, kernel 7) on the whole test split (397 images):
    mass on strokes 0.511 on average against an area share of 0.308, a margin of +0.203
    (s.d. 0.064, smallest +0.032, every image above its share); on the first 32 images, the
    ones tested here, +0.187 (smallest +0.032). Asserted: a mean margin of at least +0.10
    (about half the measured one) and at least 90% of the images above their share.
    """
    x, y, strokes = test_split.images[:32], test_split.labels[:32], test_split.strokes[:32]
    result = run_fame(vit, x, ClassLogit(y), FameConfig(iterations=30, progress=False))
    maps = result.maps(**DIGITS_BLUR)
    margin = mass_on_mask(maps, strokes) - mask_share(strokes)
    assert float(margin.mean()) >= 0.10, margin
    assert float((margin > 0).float().mean()) >= 0.9, margin


# ------------------------------------------------------------------------- masks, registry


def test_mass_on_mask_and_share_by_hand():
    maps = torch.tensor([[[0.5, 0.25], [0.25, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[True, False], [False, False]], [[True, True], [False, False]]])
    torch.testing.assert_close(mass_on_mask(maps, masks), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(mask_share(masks), torch.tensor([0.25, 0.5]))
    with pytest.raises(ValueError, match="masks have shape"):
        mass_on_mask(maps, masks[:, :1])


def test_mask_metric_takes_each_items_mask():
    """The metric picks item i's mask by batch.indices: a map equal to item 2's mask
    scores IoU 100 and mass 100 against it, and 0 against item 0's disjoint mask."""
    from fame_utils import Attribution
    from fame_utils.data.items import ClassificationBatch
    from fame_utils.metrics.adapters import Column, IoUMetric

    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 2:, 2:] = True
    masks[2, :2, 2:] = True
    metric = IoUMetric((0.5,), masks=masks)
    maps = masks[[2, 2]].float()
    batch = ClassificationBatch(torch.zeros(2, 3, 4, 4), torch.zeros(2), None, ["c", "a"], [2, 0])
    out = metric(None, batch, Attribution(maps))
    assert list(out) == [Column("IoU", threshold=0.5), Column("Mass-on-mask")]
    torch.testing.assert_close(out[Column("IoU", threshold=0.5)], torch.tensor([100.0, 0.0]))
    torch.testing.assert_close(out[Column("Mass-on-mask")], torch.tensor([100.0, 0.0]))
    with pytest.raises(ValueError, match="one mask per dataset item"):
        IoUMetric(masks=masks[0])


def test_registry_leaves_out_fullgrad_for_vits(vit):
    from fame_utils.baselines.cam import FullGrad
    from fame_utils.methods import available_methods

    on_vit = available_methods("classification", vit)
    assert "fullgrad" not in on_vit
    assert {"fame", "gradcam", "gradcam-ew", "hirescam"} <= set(on_vit)
    assert "fullgrad" in available_methods("classification", torch.nn.Linear(2, 2))
    assert "fullgrad" in available_methods("classification")
    with pytest.raises(ValueError, match="LayerNorm"):
        FullGrad()(vit, torch.rand(1, 3, 32, 32), ClassLogit([0]))


def test_digits_names_and_dataset(test_split):
    small = load_digits_images(limit=3)
    assert small.names[0] == f"#{int(small.indices[0])} digit {int(small.labels[0])}"
    data = small.dataset()
    assert (
        len(data) == 3 and data[2].label == int(small.labels[2]) and data[2].name == small.names[2]
    )
    assert torch.equal(data[1].image, small.images[1])
    assert data.identity == load_digits_images(limit=3).dataset().identity
    assert data.identity != load_digits_images(limit=4).dataset().identity


def test_tiny_vit_from_own_checkpoint(vit, tmp_path):
    """checkpoint= replaces the shipped weights (and drops their training record)."""
    state = {k: v.clone() for k, v in vit.net.state_dict().items()}
    state["heads.head.bias"] += 1.0
    torch.save(state, tmp_path / "mine.pt")
    other = load_classifier("tiny_vit_digits", checkpoint=tmp_path / "mine.pt", device="cpu")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(other(x), vit(x) + 1.0, atol=1e-5, rtol=0)
    assert other.training_record == {}
