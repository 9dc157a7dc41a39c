"""The FAME loop (paper Eq. 3-4): hand-computed steps, per-sample max, early stopping,
batching, post-processing and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import LinearScorer
from scipy import ndimage

from fame_utils import FameConfig, fame, run_fame
from fame_utils.objectives import (
    ClassLogit,
    CosineSimilarity,
    Dissimilarity,
    FeatureCell,
    Objective,
)
from fame_utils.postprocess import GRAY_WEIGHTS, gaussian_blur, normalize_maps, to_gray

QUIET = {"progress": False}


def test_one_step_matches_hand_computation():
    # L = z_0 = <W0, x>, so ∇ = W0 and one step is x̄ = x − η W0 / max|W0|.
    w = torch.zeros(2, 3, 2, 2)
    w[0, 0, 0, 0], w[0, 1, 0, 1], w[0, 2, 1, 1] = 2.0, -4.0, 1.0
    model = LinearScorer(w).eval()
    x = torch.full((1, 3, 2, 2), 0.5)
    r = run_fame(model, x, ClassLogit([0]), iterations=1, step_size=0.1, **QUIET)
    step = 0.1 * w[0] / 4.0  # channel-wise change of x̄: (0.05, -0.1, 0.025) at three pixels
    expected = (step * torch.tensor(GRAY_WEIGHTS).view(3, 1, 1)).sum(0).abs()
    torch.testing.assert_close(r.delta[0], expected, rtol=0, atol=1e-7)
    assert r.delta[0, 0, 1] == pytest.approx(0.1 * 0.587, abs=1e-7)
    # the loss went down by <W0, η W0/max|W0|> = 0.1·(4 + 16 + 1)/4
    assert float(r.initial_loss - r.final_loss) == pytest.approx(0.525, abs=1e-6)
    assert r.steps.tolist() == [1]


def test_max_is_taken_per_sample():
    # Two classes whose gradients differ in scale by 1000: with a per-sample max each
    # sample's largest pixel change is exactly η per step; a batch-wide max would shrink one.
    w = torch.randn(2, 3, 4, 4)
    w[1] *= 1000.0
    model = LinearScorer(w).eval()
    x = torch.rand(2, 3, 4, 4)
    r = run_fame(
        model, x, ClassLogit([0, 1]), iterations=3, step_size=0.01, normalization="none", **QUIET
    )
    for i in range(2):
        moved = (3 * 0.01 * w[i] / w[i].abs().max()).mul(torch.tensor(GRAY_WEIGHTS).view(3, 1, 1))
        torch.testing.assert_close(r.delta[i], moved.sum(0).abs(), rtol=1e-5, atol=1e-7)


def test_early_stop_per_sample():
    # L = <w, x> with |w| = 1 everywhere: each step lowers L by η·(3·H·W) = 0.1·12 = 1.2.
    w = torch.ones(1, 3, 2, 2)
    model = LinearScorer(w).eval()
    x = torch.stack([torch.full((3, 2, 2), 0.1), torch.full((3, 2, 2), 0.9)])  # L0 = 1.2, 10.8
    r = run_fame(
        model,
        x,
        ClassLogit([0, 0]),
        iterations=20,
        step_size=0.1,
        early_stop=0.5,
        early_stop_check_every=1,
        **QUIET,
    )
    # sample 0: 1.2 -> 0.0 after 1 step (< 0.5, stops); sample 1: 10.8 -> ... 0.0 after 9 steps
    assert r.steps.tolist() == [1, 9]
    torch.testing.assert_close(r.delta[0], torch.full((2, 2), 0.1 * sum(GRAY_WEIGHTS)))
    torch.testing.assert_close(r.delta[1], torch.full((2, 2), 0.9 * sum(GRAY_WEIGHTS)))


def test_already_below_early_stop_gives_empty_map_and_warning():
    model = LinearScorer(torch.ones(1, 3, 2, 2)).eval()
    x = torch.zeros(1, 3, 2, 2)  # L = 0 < 0.01: never moves (the impostor-pair caveat)
    r = run_fame(model, x, ClassLogit([0]), iterations=5, early_stop=0.01, **QUIET)
    assert r.steps.tolist() == [0] and bool(r.empty.all())
    with pytest.warns(UserWarning, match="empty"):
        maps = r.maps(kernel_size=1)
    assert maps.abs().sum() == 0 and torch.isfinite(maps).all()


def test_batch_equals_single_and_chunks(tiny_cnn):
    x = torch.rand(5, 3, 20, 20)
    targets = [0, 1, 2, 3, 4]
    cfg = FameConfig(iterations=6, kernel_size=7, sigma=2.0, progress=False)
    together = fame(tiny_cnn, x, ClassLogit(targets), cfg)
    chunked = fame(tiny_cnn, x, ClassLogit(targets), cfg, batch_size=2)
    single = torch.cat(
        [fame(tiny_cnn, x[i : i + 1], ClassLogit([t]), cfg) for i, t in enumerate(targets)]
    )
    assert together.shape == (5, 20, 20)
    torch.testing.assert_close(together, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(together, chunked, atol=1e-5, rtol=0)
    assert torch.allclose(together.flatten(1).amax(1), torch.ones(5))
    assert together.min() >= 0


def test_descends_the_logit(tiny_cnn):
    x = torch.rand(3, 3, 16, 16)
    r = run_fame(tiny_cnn, x, ClassLogit([1, 2, 3]), iterations=10, **QUIET)
    assert bool((r.final_loss < r.initial_loss).all())


def test_normalized_step_space_uses_the_model_std():
    # x_n = (x - m)/s; stepping δ in normalised space moves pixels by s·δ, and Δx is
    # measured in normalised units: |gray(η ∇_n/max|∇_n|)| with ∇_n = s ⊙ W.
    w = torch.ones(1, 3, 2, 2)
    std = (0.5, 0.25, 0.125)
    model = LinearScorer(w, normalization=((0.0,) * 3, std)).eval()
    x = torch.full((1, 3, 2, 2), 0.5)
    r = run_fame(model, x, ClassLogit([0]), iterations=1, step_size=0.1, **QUIET)
    g = torch.tensor(std) / 0.5  # ∇_n / max|∇_n| per channel
    assert r.delta[0, 0, 0] == pytest.approx(0.1 * float((g * torch.tensor(GRAY_WEIGHTS)).sum()))
    # pixel-space loss dropped by η·Σ_c s_c·g_c·(H·W)
    drop = 0.1 * float((torch.tensor(std) * g).sum()) * 4
    assert float(r.initial_loss - r.final_loss) == pytest.approx(drop, rel=1e-5)
    rp = run_fame(
        model, x, ClassLogit([0]), iterations=1, step_size=0.1, step_space="pixel", **QUIET
    )
    assert rp.delta[0, 0, 0] == pytest.approx(0.1 * sum(GRAY_WEIGHTS))


def test_gray_first_then_difference():
    a = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    b = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    # |gray(a) - gray(b)| = |0.2989 - 0.587| = 0.2881, not gray(|a - b|) = 0.8859
    assert float((to_gray(a) - to_gray(b)).abs()) == pytest.approx(0.2881, abs=1e-6)


@pytest.mark.parametrize("kernel_size,sigma", [(49, 7.7), (9, 2.0), (25, 5.0)])
def test_blur_matches_scipy(kernel_size, sigma):
    m = torch.rand(2, 60, 50, dtype=torch.float64)
    ours = gaussian_blur(m, kernel_size, sigma).numpy()
    truncate = (kernel_size // 2) / sigma
    ref = np.stack(
        [ndimage.gaussian_filter(a, sigma, mode="mirror", truncate=truncate) for a in m.numpy()]
    )
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_normalizations():
    m = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    mx, empty = normalize_maps(m, "max")
    torch.testing.assert_close(mx[0], torch.tensor([[0.25, 0.5], [0.75, 1.0]]))
    assert mx[1].abs().sum() == 0 and empty.tolist() == [False, True]
    mm, _ = normalize_maps(m, "minmax")
    torch.testing.assert_close(mm[0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    const, empty = normalize_maps(torch.full((1, 2, 2), 3.0), "minmax")
    assert const.abs().sum() == 0 and empty.tolist() == [True]


def test_reblur_without_rerunning(tiny_cnn):
    x = torch.rand(1, 3, 24, 24)
    r = run_fame(tiny_cnn, x, ClassLogit([0]), iterations=3, **QUIET)
    torch.testing.assert_close(
        r.maps(sigma=2.0, kernel_size=9), normalize_maps(gaussian_blur(r.delta, 9, 2.0))[0]
    )
    assert not torch.allclose(r.maps(sigma=2.0, kernel_size=9), r.maps())


def test_objective_values_on_known_cases():
    w = torch.randn(3, 3, 4, 4)
    model = LinearScorer(w).eval()
    x = torch.rand(2, 3, 4, 4)
    logits = model(x)
    _, obj = ClassLogit([2, 0]).expand(model, x)
    torch.testing.assert_close(obj(model, x), torch.stack([logits[0, 2], logits[1, 0]]))

    emb = torch.nn.Flatten().eval()  # embedding = the pixels themselves
    refs = torch.rand(2, 48)
    s = torch.nn.functional.cosine_similarity(x.flatten(1), refs)
    _, pos = CosineSimilarity(refs).expand(emb, x)
    _, neg = Dissimilarity(refs).expand(emb, x)
    torch.testing.assert_close(pos(emb, x), s)
    torch.testing.assert_close(neg(emb, x), 1 - s)


def test_feature_cell_value_and_expansion():
    # identity "layer": a[k] is the pixel, L_a = Σ_c |x_c[k]|
    net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten()).eval()
    x = torch.randn(2, 3, 3, 4).clamp(0, 1)
    cells = [(0, 0), (2, 3)]
    xe, obj = FeatureCell("0", cells).expand(net, x)
    assert xe.shape == (4, 3, 3, 4)  # image-major: (img0,c0), (img0,c1), (img1,c0), (img1,c1)
    want = torch.stack(
        [
            x[0, :, 0, 0].abs().sum(),
            x[0, :, 2, 3].abs().sum(),
            x[1, :, 0, 0].abs().sum(),
            x[1, :, 2, 3].abs().sum(),
        ]
    )
    torch.testing.assert_close(obj(net, xe), want)
    _, all_cells = FeatureCell("0").expand(net, x)
    assert all_cells.per_sample.shape == (2 * 12, 2)
    with pytest.raises(ValueError, match="outside"):
        FeatureCell("0", [(3, 0)]).expand(net, x)
    with pytest.raises(ValueError, match="no submodule"):
        FeatureCell("nope", [(0, 0)]).expand(net, x)


def test_feature_cell_map_stays_in_the_cell_for_a_pointwise_layer():
    # a 1x1 conv layer: cell k depends only on pixel k, so Δx is zero elsewhere
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU()).eval()
    x = torch.rand(1, 3, 5, 5)
    r = run_fame(net, x, FeatureCell(net[0], [(1, 2)]), iterations=2, **QUIET)
    nz = r.delta[0].nonzero().tolist()
    assert nz == [[1, 2]]


def test_custom_objective_protocol(tiny_cnn):
    class SecondLogitSquared(Objective):
        def __call__(self, model, inputs):
            return model(inputs)[:, 1] ** 2

    r = run_fame(tiny_cnn, torch.rand(2, 3, 16, 16), SecondLogitSquared(), iterations=4, **QUIET)
    assert bool((r.final_loss <= r.initial_loss).all())


def test_result_on_input_device(tiny_cnn):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        model = tiny_cnn.to(dev)
        out = fame(
            model, torch.rand(1, 3, 16, 16, device=dev), ClassLogit([0]), iterations=2, **QUIET
        )
        assert out.device.type == dev
    if torch.cuda.is_available():  # images on CPU, model on GPU: result back on CPU
        out = fame(
            tiny_cnn.to("cuda"), torch.rand(1, 3, 16, 16), ClassLogit([0]), iterations=2, **QUIET
        )
        assert out.device.type == "cpu"


@pytest.mark.parametrize(
    "images,exc,match",
    [
        (torch.rand(3, 16, 16), ValueError, "unsqueeze"),
        (torch.rand(1, 1, 16, 16), ValueError, "3 RGB channels"),
        (torch.rand(1, 3, 16, 16) * 255, ValueError, r"\[0, 1\]"),
        ((torch.rand(1, 3, 16, 16) * 255).to(torch.uint8), TypeError, "floating-point"),
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN"),
        (np.zeros((1, 3, 16, 16), dtype=np.float32), TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny_cnn, images, exc, match):
    with pytest.raises(exc, match=match):
        fame(tiny_cnn, images, ClassLogit(0), iterations=1, **QUIET)


def test_target_count_must_match_batch(tiny_cnn):
    with pytest.raises(ValueError, match="3 entries but the batch has 2"):
        fame(tiny_cnn, torch.rand(2, 3, 16, 16), ClassLogit([0, 1, 2]), iterations=1, **QUIET)
    with pytest.raises(ValueError, match="one partner embedding per image"):
        fame(tiny_cnn, torch.rand(2, 3, 16, 16), CosineSimilarity(torch.rand(3, 5)), **QUIET)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\], got \[7\]"):
        fame(tiny_cnn, torch.rand(1, 3, 16, 16), ClassLogit([7]), iterations=1, **QUIET)
    with pytest.raises(ValueError, match=r"class indices in .*got \[-1\]"):
        fame(tiny_cnn, torch.rand(1, 3, 16, 16), ClassLogit([-1]), iterations=1, **QUIET)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="kernel_size"):
        FameConfig(kernel_size=4)
    with pytest.raises(ValueError, match="normalization"):
        FameConfig(normalization="l2")
    with pytest.raises(TypeError, match="unexpected keyword argument .iteratons."):
        FameConfig().replace(iteratons=5)


def test_finished_samples_leave_the_batch():
    # same setting as test_early_stop_per_sample: sample 0 is done after 1 step
    sizes = []

    class Recording(LinearScorer):
        def forward(self, x):
            sizes.append(x.shape[0])
            return super().forward(x)

    model = Recording(torch.ones(1, 3, 2, 2)).eval()
    x = torch.stack([torch.full((3, 2, 2), 0.1), torch.full((3, 2, 2), 0.9)])
    r = run_fame(
        model,
        x,
        ClassLogit([0, 0]),
        iterations=20,
        step_size=0.1,
        early_stop=0.5,
        early_stop_check_every=2,
        **QUIET,
    )
    assert r.steps.tolist() == [1, 9]
    # iterations 1-2 run both samples, 3-10 only sample 1 (stops at the check after it 10),
    # then one final forward over both to report the loss
    assert sizes == [2, 2] + [1] * 8 + [2]
    torch.testing.assert_close(r.final_loss, torch.tensor([0.0, 0.0]), atol=1e-5, rtol=0)
