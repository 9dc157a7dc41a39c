"""Baselines: CAMs against pytorch-grad-cam and hand computations, CorrRISE against scipy
and a toy model with a known region, FGGB against a per-dimension loop."""

import numpy as np
import pytest
import pytorch_grad_cam
import scipy.stats
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fame_utils import Attribution, ClassLogit, CosineSimilarity, Fame
from fame_utils.baselines.cam import FullGrad, GradCAM, GradCAMElementWise, HiResCAM
from fame_utils.baselines.corrrise import CorrRISE, make_patch_masks, rank_average, spearman_map
from fame_utils.baselines.fggb import FGGB
from fame_utils.methods import make_methods, table_methods
from fame_utils.postprocess import gaussian_blur

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)


class SmallCNN(nn.Module):
    """Conv-BN-ReLU network following the wrapper contract ([0, 1] input, normalises
    inside, ``target_layer``, ``input_normalization``); ``normalize=False`` takes
    already normalised tensors (for calling pytorch-grad-cam the usual way)."""

    def __init__(self, out: int = 6, normalize: bool = True):
        super().__init__()
        self.normalize = normalize
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.block = nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, out)
        self.target_layer = self.block
        self.input_normalization = (MEAN, STD)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x):
        if self.normalize:
            x = (x - self.mean) / self.std
        return self.head(self.block(self.features(x)).mean((2, 3)))


def small_cnn(out: int = 6, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    net = SmallCNN(out)
    for m in net.modules():  # non-trivial BN statistics so that biases matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def net():
    torch.set_num_threads(1)
    return small_cnn()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _hooked(model, layer, x):
    """Activation of ``layer`` and the output, with the activation in the graph."""
    store = []
    h = layer.register_forward_hook(lambda m, i, o: store.append(o))
    try:
        out = model(x)
    finally:
        h.remove()
    return store[0], out


def _minmax(m):
    flat = m.flatten(1)
    lo = flat.min(1, keepdim=True).values
    flat = flat - lo
    return (flat / (1e-7 + flat.max(1, keepdim=True).values)).view_as(m)


def _hand_cam(coarse, size):
    """pytorch-grad-cam's post-processing: ReLU, min-max, bilinear resize, min-max."""
    cam = _minmax(coarse.clamp_min(0))
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _minmax(cam)


# ---------------------------------------------------------------- CAM family


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (GradCAM, pytorch_grad_cam.GradCAM),
        (GradCAMElementWise, pytorch_grad_cam.GradCAMElementWise),
        (HiResCAM, pytorch_grad_cam.HiResCAM),
    ],
)
def test_cams_equal_direct_pytorch_grad_cam(net, images, ours, theirs):
    classes = [0, 3, 5]
    attr = ours()(net, images, ClassLogit(classes))
    assert isinstance(attr, Attribution) and attr.negative is None
    with theirs(model=net, target_layers=[net.block]) as cam:
        ref = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in classes])
    assert attr.positive.shape == (3, 32, 32)
    torch.testing.assert_close(attr.positive, torch.from_numpy(ref), atol=1e-6, rtol=0)
    assert float(attr.positive.min()) >= 0 and float(attr.positive.max()) <= 1


def test_gradcam_elementwise_is_sum_of_relu_grad_times_activation(net, images):
    classes = torch.tensor([1, 2, 4])
    ours = GradCAMElementWise()(net, images, ClassLogit(classes)).positive
    x = images.clone().requires_grad_(True)
    act, logits = _hooked(net, net.block, x)
    (grad,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), act)
    coarse = (grad * act).clamp_min(0).sum(1).detach()  # Σ_c ReLU(grad ⊙ act)
    torch.testing.assert_close(ours, _hand_cam(coarse, (32, 32)), atol=1e-5, rtol=0)
    # and the element-wise definition is not Grad-CAM's channel-averaged one
    gradcam = GradCAM()(net, images, ClassLogit(classes)).positive
    assert (ours - gradcam).abs().max() > 0.05


def test_gradcam_similarity_target_by_hand_and_batch_safe(net, images):
    refs = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    ours = GradCAM()(net, images, CosineSimilarity(refs)).positive
    x = images.clone().requires_grad_(True)
    act, emb = _hooked(net, net.block, x)
    cos = F.cosine_similarity(emb, refs, dim=1)
    (grad,) = torch.autograd.grad(cos.sum(), act)
    coarse = (grad.mean((2, 3), keepdim=True) * act).sum(1).detach()
    torch.testing.assert_close(ours, _hand_cam(coarse, (32, 32)), atol=1e-5, rtol=0)
    singles = torch.cat(
        [
            GradCAM()(net, images[i : i + 1], CosineSimilarity(refs[i : i + 1])).positive
            for i in range(3)
        ]
    )
    torch.testing.assert_close(ours, singles, atol=1e-5, rtol=0)


def test_constant_norm_target_gradient_is_r_hat_over_output_norm():
    # hand-made: o = (3, 4) (‖o‖ = 5), r = (1, 0) (r̂ = r); s = 3/5.
    from fame_utils.baselines.cam import _SimilarityTarget

    r = torch.tensor([1.0, 0.0])
    grads = {}
    for mode in ("cosine", "constant_norm"):
        o = torch.tensor([3.0, 4.0], requires_grad=True)
        value = _SimilarityTarget(r, mode == "constant_norm")(o)
        assert value.item() == pytest.approx(0.6)  # the same value either way
        (grads[mode],) = torch.autograd.grad(value, o)
    # constant norm: r̂/‖o‖ = (1/5, 0)
    torch.testing.assert_close(grads["constant_norm"], torch.tensor([0.2, 0.0]))
    # through the norm: (r̂ − s·ô)/‖o‖ = ((1 − 0.6·0.6)/5, (0 − 0.6·0.8)/5)
    torch.testing.assert_close(grads["cosine"], torch.tensor([0.128, -0.096]))
    # a (N, D) output: one value per row, each with its own constant norm
    o2 = torch.tensor([[3.0, 4.0], [0.0, 2.0]], requires_grad=True)
    (g2,) = torch.autograd.grad(_SimilarityTarget(r, constant_norm=True)(o2).sum(), o2)
    torch.testing.assert_close(g2, torch.tensor([[0.2, 0.0], [0.5, 0.0]]))


def test_face_cam_target_follows_the_recipe(net, images):
    refs = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    target = CosineSimilarity(refs)
    paper = GradCAM()(net, images, target).positive
    (by_paper,) = make_methods(["gradcam"], "verification", recipe="paper")
    assert torch.equal(paper, by_paper(net, images, target).positive)
    assert torch.equal(paper, GradCAM(face_target="cosine")(net, images, target).positive)
    (by_reference,) = make_methods(["gradcam"], "verification", recipe="reference")
    ref = by_reference(net, images, target).positive
    torch.testing.assert_close(
        ref, GradCAM(face_target="constant_norm")(net, images, target).positive
    )
    assert (ref - paper).abs().max() > 1e-3
    # Grad-CAM with the constant-norm target by hand: gradient of o·r̂/‖o‖ with ‖o‖ fixed
    x = images.clone().requires_grad_(True)
    act, emb = _hooked(net, net.block, x)
    value = (emb * F.normalize(refs, dim=1)).sum(1) / emb.detach().norm(dim=1)
    (grad,) = torch.autograd.grad(value.sum(), act)
    coarse = (grad.mean((2, 3), keepdim=True) * act).sum(1).detach()
    torch.testing.assert_close(ref, _hand_cam(coarse, (32, 32)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="constant_norm"):
        GradCAMElementWise(face_target="unit")


@pytest.mark.parametrize("method", [GradCAM, GradCAMElementWise, HiResCAM, FullGrad])
@pytest.mark.parametrize("cls", [-1, 6, 999])
def test_cams_refuse_class_indices_outside_the_logits(net, images, method, cls):
    # −1 used to explain the last class (pytorch-grad-cam indexes from the end)
    with pytest.raises(ValueError, match=r"class indices in \[0, "):
        method()(net, images, ClassLogit([0, cls, 1]))


def _train_mode_net():
    model = small_cnn()
    model.train()
    model.features[1].eval()  # a mixed mode the methods must restore exactly
    return model


def _buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "method, target",
    [
        (GradCAM(), "class"),
        (GradCAMElementWise(), "class"),
        (HiResCAM(), "class"),
        (FullGrad(), "class"),
        (CorrRISE(n_masks=8, batch_size=5), "class"),
        (CorrRISE(n_masks=8, batch_size=5), "similarity"),
        (GradCAM(), "similarity"),
        (FGGB(threshold=0.2), "similarity"),
    ],
)
def test_baselines_run_in_eval_mode_and_change_no_buffer(images, method, target):
    model = _train_mode_net()
    modes = {name: m.training for name, m in model.named_modules()}
    before = _buffers(model)
    t = ClassLogit([0, 1, 2]) if target == "class" else CosineSimilarity(torch.randn(3, 6))
    got = method(model, images, t).positive
    # BatchNorm running statistics (and every other buffer) unchanged, modes restored
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert {name: m.training for name, m in model.named_modules()} == modes
    # the maps are those of the eval-mode model
    want = method(small_cnn().eval(), images, t).positive
    torch.testing.assert_close(got, want)


def test_baselines_refuse_images_of_another_dtype(net, images):
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(TypeError, match="float32"):
            GradCAM()(net, images.to(dtype), ClassLogit(0))


def test_cam_leaves_no_hooks_or_gradients(net, images):
    flags = [p.requires_grad for p in net.parameters()]
    for method in (GradCAM(), GradCAMElementWise(), HiResCAM(), FullGrad()):
        method(net, images, ClassLogit(0))
    for m in net.modules():
        assert not m._forward_hooks and not m._backward_hooks
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())


def test_cam_target_layer_override_and_errors(net, images):
    by_name = GradCAM(target_layer="features")(net, images, ClassLogit(1)).positive
    by_module = GradCAM(target_layer=net.features)(net, images, ClassLogit(1)).positive
    torch.testing.assert_close(by_name, by_module)
    default = GradCAM()(net, images, ClassLogit(1)).positive
    assert (by_name - default).abs().max() > 0.05
    with pytest.raises(ValueError, match="no submodule"):
        GradCAM(target_layer="nope")(net, images, ClassLogit(1))
    with pytest.raises(TypeError, match=r"ClassLogit\(classes\) or"):
        GradCAM()(net, images, 3)
    with pytest.raises(ValueError, match="class indices"):
        GradCAM()(net, images, ClassLogit(17))


def test_fullgrad_in_normalized_space_equals_pytorch_grad_cam(net, images):
    ours = FullGrad()(net, images, ClassLogit([0, 1, 2])).positive
    raw = SmallCNN(6, normalize=False).eval()
    raw.load_state_dict(net.state_dict())
    x_n = (images - net.mean) / net.std
    targets = [ClassifierOutputTarget(c) for c in (0, 1, 2)]
    with pytorch_grad_cam.FullGrad(model=raw, target_layers=[]) as cam:
        ref = cam(input_tensor=x_n, targets=targets)
    torch.testing.assert_close(ours, torch.from_numpy(ref), atol=1e-5, rtol=0)


class _Affine(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def test_fullgrad_refuses_models_with_biases_it_cannot_see(images):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), _Affine(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(images)
    net.eval()
    with pytest.raises(ValueError, match=r"1 modules carry biases.*_Affine"):
        FullGrad()(net, images, ClassLogit(0))
    no_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.LazyLinear(2))
    no_bias(images)
    with pytest.raises(ValueError, match="none"):
        FullGrad()(no_bias.eval(), images, ClassLogit(0))


# ---------------------------------------------------------------- CorrRISE


def test_patch_masks_geometry_and_seed():
    masks = make_patch_masks(200, (48, 40), patches=3, patch_size=10, seed=3)
    assert masks.shape == (200, 48, 40)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    occluded = (masks == 0).flatten(1).sum(1)
    assert occluded.min() >= 100 and occluded.max() <= 300  # 1 to 3 non-/overlapping squares
    # every pixel of the border rows/cols is rarely hit but the patches reach the edges
    assert (masks[:, 0, :] == 0).any() and (masks[:, -1, :] == 0).any()
    assert (masks[:, :, -1] == 0).any()
    torch.testing.assert_close(masks, make_patch_masks(200, (48, 40), 3, 10, seed=3))
    assert not torch.equal(masks, make_patch_masks(200, (48, 40), 3, 10, seed=4))
    # the default side, 30/112 of the image (one square per mask: exactly side² zeros)
    for size, side in ((112, 30), (150, 40)):
        zeros = (CorrRISE(n_masks=4, patches=1).masks((size, size)) == 0).sum((1, 2))
        assert zeros.tolist() == [side * side] * 4


def test_rank_average_matches_scipy():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (3, 25), generator=g).double()  # many ties
    expected = np.stack([scipy.stats.rankdata(s.numpy()) for s in scores])
    np.testing.assert_allclose(rank_average(scores).numpy(), expected)


def test_spearman_map_equals_scipy_per_pixel():
    masks = make_patch_masks(20, (6, 7), patches=2, patch_size=3, seed=5)
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 8, (2, 20), generator=g).double() / 7  # ties in the scores
    ours = spearman_map(masks.double(), scores)
    for b in range(2):
        for i in range(6):
            for j in range(7):
                m = masks[:, i, j].numpy()
                if m.min() == m.max():  # never (or always) occluded: undefined -> 0
                    assert ours[b, i, j] == 0
                    continue
                rho = scipy.stats.spearmanr(m, scores[b].numpy()).statistic
                assert float(ours[b, i, j]) == pytest.approx(rho, abs=1e-12)


class RegionEmbedder(nn.Module):
    """Toy verification 'model': φ(x) = (1, mean of x over a square region R). Against the
    reference (0, 1) the cosine grows with that mean, so only R can matter."""

    def __init__(self, region=(slice(14, 26), slice(20, 32))):
        super().__init__()
        self.region = region

    def forward(self, x):
        m = x[:, :, self.region[0], self.region[1]].mean((1, 2, 3))
        return torch.stack([torch.ones_like(m), m], 1)


def test_corrrise_finds_the_region_that_drives_the_score():
    model = RegionEmbedder()
    x = torch.full((1, 3, 48, 48), 0.8)
    refs = torch.tensor([[0.0, 1.0]])
    attr = CorrRISE(n_masks=300, patch_size=10, seed=0)(model, x, CosineSimilarity(refs))
    pos, neg = attr.positive[0], attr.negative[0]
    inside = torch.zeros(48, 48, dtype=torch.bool)
    inside[model.region] = True
    assert float(pos.max()) == pytest.approx(1.0)
    assert bool(inside[divmod(int(pos.argmax()), 48)])
    assert float(pos[inside].mean()) > 0.6
    assert float(pos[~inside].mean()) < 0.15
    assert float(pos[inside].sum() / pos.sum()) > 0.45  # R is 6 % of the image
    # occluding R only ever lowers the score: no e₋ inside R
    assert float(neg[inside].max()) == 0.0


def test_corrrise_batched_equals_one_pair_at_a_time(images):
    # float64, so that batch-size-dependent rounding cannot reorder near-tied scores
    net = small_cnn().double()
    images = images.double()
    refs = torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    method = CorrRISE(n_masks=24, batch_size=7)  # chunks straddle images
    both = method(net, images, CosineSimilarity(refs))
    for i in range(3):
        one = method(net, images[i : i + 1], CosineSimilarity(refs[i : i + 1]))
        torch.testing.assert_close(both.positive[i : i + 1], one.positive, atol=1e-10, rtol=0)
        torch.testing.assert_close(both.negative[i : i + 1], one.negative, atol=1e-10, rtol=0)
    for m in (both.positive, both.negative):
        assert m.shape == (3, 32, 32)
        assert float(m.min()) >= 0 and float(m.flatten(1).max(1).values.min()) == pytest.approx(1)


def test_corrrise_scores_are_cosines_of_masked_images_and_class_scores(net, images):
    refs = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))
    method = CorrRISE(n_masks=5, patch_size=8, batch_size=4)
    scores = method.scores(net, images, CosineSimilarity(refs))
    masks = method.masks((32, 32))
    with torch.no_grad():
        for b in range(3):
            emb = net(images[b : b + 1] * masks[:, None])
            expected = F.cosine_similarity(emb, refs[b : b + 1], dim=1)
            torch.testing.assert_close(scores[b], expected, atol=1e-6, rtol=0)
        probs = method.scores(net, images, ClassLogit([1, 2, 3]))
        expected = net(images[2:3] * masks[:, None]).softmax(1)[:, 3]
        torch.testing.assert_close(probs[2], expected, atol=1e-6, rtol=0)
    attr = method(net, images, ClassLogit([1, 2, 3]))
    assert attr.positive.shape == attr.negative.shape == (3, 32, 32)


# ---------------------------------------------------------------- FGGB


class TinyEmbedder(nn.Module):
    def __init__(self, d: int = 8):
        super().__init__()
        torch.manual_seed(7)
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.Tanh(), nn.Conv2d(6, 6, 3))
        self.fc = nn.Linear(6 * 5 * 5, d)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def _fggb_loop(model, x, refs, theta, kernel_size=25, sigma=5.0):
    """Straightforward FGGB: one backward pass per image and embedding dimension."""
    out_pos, out_neg, out_s = [], [], []
    for b in range(x.shape[0]):
        xb = x[b : b + 1].clone().requires_grad_(True)
        emb = F.normalize(model(xb), dim=1)[0]
        ref = F.normalize(refs[b], dim=0)
        d = emb.shape[0]
        s = torch.zeros(x.shape[-2:], dtype=x.dtype)
        for k in range(d):
            (g,) = torch.autograd.grad(emb[k], xb, retain_graph=True)
            gk = g[0].abs().mean(0)
            gk = gk / gk.norm()
            s += (ref[k] * emb[k].detach() - theta / d) * gk
        out_s.append(s)
        pos = gaussian_blur(s.clamp_min(0)[None], kernel_size, sigma)[0]
        neg = gaussian_blur((-s).clamp_min(0)[None], kernel_size, sigma)[0]
        out_pos.append(pos / pos.max() if pos.max() > 0 else pos)
        out_neg.append(neg / neg.max() if neg.max() > 0 else neg)
    return torch.stack(out_s), torch.stack(out_pos), torch.stack(out_neg)


def test_fggb_equals_per_dimension_loop():
    model = TinyEmbedder(8).eval().double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    refs = torch.randn(3, 8, generator=g, dtype=torch.float64)
    theta = 0.3
    s_loop, pos_loop, neg_loop = _fggb_loop(model, x, refs, theta, kernel_size=5, sigma=1.0)
    method = FGGB(threshold=theta, kernel_size=5, sigma=1.0, chunk_size=3)
    target = CosineSimilarity(refs)
    torch.testing.assert_close(method.saliency(model, x, target), s_loop, atol=1e-12, rtol=1e-9)
    attr = method(model, x, target)
    torch.testing.assert_close(attr.positive, pos_loop, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(attr.negative, neg_loop, atol=1e-12, rtol=1e-9)
    assert (s_loop > 0).any() and (s_loop < 0).any()  # both parts exercised


class _HostTanh(torch.autograd.Function):
    """tanh whose backward reads a value on the host: torch's batched backward refuses it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.tanh()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (1 - x.tanh() ** 2) * float(grad.new_ones(()).item())


def test_fggb_works_where_the_batched_backward_fails():
    model = TinyEmbedder(8).eval().double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    refs = torch.randn(2, 8, generator=g, dtype=torch.float64)
    method, target = FGGB(threshold=0.3, chunk_size=3), CosineSimilarity(refs)
    expected = method.saliency(model, x, target)
    model.conv[1].forward = _HostTanh.apply  # same function, no batching rule
    with pytest.raises(RuntimeError):
        x1 = x.clone().requires_grad_(True)
        e = model(x1)
        torch.autograd.grad(
            e, x1, torch.eye(8, dtype=x.dtype)[:, None].expand(8, 2, 8), is_grads_batched=True
        )
    torch.testing.assert_close(method.saliency(model, x, target), expected, atol=1e-12, rtol=1e-9)


def test_fggb_threshold_resolution_and_errors(images):
    model = TinyEmbedder(8).eval()
    x = images[:, :, :16, :16]
    refs = torch.randn(3, 8, generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="threshold"):
        FGGB()(model, x, CosineSimilarity(refs))
    from_target = FGGB().saliency(model, x, CosineSimilarity(refs, threshold=0.9))
    from_ctor = FGGB(threshold=0.9).saliency(model, x, CosineSimilarity(refs, threshold=-0.5))
    torch.testing.assert_close(from_target, from_ctor)
    other = FGGB(threshold=-0.5).saliency(model, x, CosineSimilarity(refs))
    assert (other - from_ctor).abs().max() > 1e-4
    with pytest.raises(TypeError, match="CosineSimilarity"):
        FGGB(threshold=0.3)(model, x, ClassLogit(0))
    # θ is a threshold on the cosine: outside [−1, 1] (it used to give all-zero e₊) or NaN
    # is refused (issue 9, item 5)
    for bad in (50.0, 2.0, float("nan")):
        with pytest.raises(ValueError, match=r"\[-1, 1\]"):
            FGGB(threshold=bad)
        with pytest.raises(ValueError, match=r"\[-1, 1\]"):
            FGGB()(model, x, CosineSimilarity(refs, threshold=bad))


# ---------------------------------------------------------------- factories


def test_method_lists_follow_the_convention(net, images):
    cls = make_methods(table_methods("classification"), "classification")
    assert [m.name for m in cls] == ["FAME", "Grad-CAM", "Grad-CAM-EW", "HiResCAM", "FullGrad"]
    faces = make_methods(table_methods("verification"), "verification", threshold=0.3)
    assert [m.name for m in faces] == ["Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"]
    assert isinstance(faces[-1], Fame) and faces[3].threshold == 0.3
    for method in cls[1:]:
        out = method(net, images, ClassLogit([0, 1, 2]))
        assert out.positive.shape == (3, 32, 32) and out.positive.device == images.device


@pytest.mark.slow
def test_fullgrad_on_the_real_models():
    """FullGrad runs on the embedded EfficientNet-Lite0 (every bias sits in a BatchNorm2d) and
    refuses dlib's face network, whose custom Affine layers carry biases it cannot see."""
    from fame_utils.models.classifiers import load_classifier
    from fame_utils.models.faces import load_face_model

    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    clf = load_classifier("efficientnet_lite0", device="cpu")
    maps = FullGrad()(clf, x, ClassLogit([967])).positive
    assert maps.shape == (1, 224, 224)
    assert float(maps.min()) == pytest.approx(0, abs=1e-6)
    assert float(maps.max()) == pytest.approx(1, abs=1e-6)
    face = load_face_model("dlib_resnet", device="cpu")
    with pytest.raises(ValueError, match="Affine"):
        FullGrad()(face, torch.rand(1, 3, 150, 150), ClassLogit(0))
