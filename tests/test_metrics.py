"""Metrics of Tables 1 and 2 on hand-made maps, boxes and models with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fame_utils.metrics.face import FacePerturbation, eer_threshold, face_deletion_insertion
from fame_utils.metrics.localization import iou_at_thresholds
from fame_utils.metrics.road import class_scores, noisy_linear_impute, removal_masks, road_scores
from fame_utils.postprocess import gaussian_blur

# pytorch-grad-cam's imputer hands torch tensors to scipy, which numpy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning")

# ----------------------------------------------------------------------------- IoU


def test_iou_map_equal_to_box_is_one_at_every_threshold():
    masks = torch.zeros(2, 12, 16, dtype=torch.bool)
    masks[0, 2:7, 3:11] = True
    masks[1, 5:12, 0:4] = True
    maps = masks.float()
    iou = iou_at_thresholds(maps, masks, [0.05, 0.3, 0.5, 0.7, 1.0])
    assert torch.equal(iou, torch.ones(2, 5))


def test_iou_hand_computed_values():
    # box: rows 0..3, cols 0..3 (16 px); map: 0.8 on rows 0..3 cols 2..7 (24 px),
    # 0.4 on rows 0..3 cols 0..1, 0 elsewhere.
    box = torch.zeros(1, 8, 8, dtype=torch.bool)
    box[0, :4, :4] = True
    m = torch.zeros(1, 8, 8)
    m[0, :4, 2:8] = 0.8
    m[0, :4, :2] = 0.4
    iou = iou_at_thresholds(m, box, [0.3, 0.5, 0.8, 0.9])[0]
    # t=0.3: S = rows 0..3 cols 0..7 (32) ⊇ box -> 16/32
    # t=0.5 and 0.8 (≥ is inclusive): S = cols 2..7 (24), ∩ = 8, ∪ = 32
    # t=0.9: S empty -> 0/16
    assert iou.tolist() == [0.5, 0.25, 0.25, 0.0]


def test_iou_scaled_box_map_switches_at_its_height():
    box = torch.zeros(1, 10, 10, dtype=torch.bool)
    box[0, 3:8, 2:6] = True
    iou = iou_at_thresholds(box.float() * 0.6, box, [0.3, 0.6, 0.61])[0]
    assert iou.tolist() == [1.0, 1.0, 0.0]


def test_iou_matches_bruteforce_and_is_batch_invariant():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(5, 9, 11, generator=g)
    masks = torch.rand(5, 9, 11, generator=g) > 0.6
    ts = [0.1, 0.45, 0.9]
    got = iou_at_thresholds(maps, masks, ts)
    for i in range(5):
        one = iou_at_thresholds(maps[i : i + 1], masks[i : i + 1], ts)[0]
        assert torch.equal(one, got[i])
        for j, t in enumerate(ts):
            s = maps[i].numpy() >= t
            b = masks[i].numpy()
            want = (s & b).sum() / max((s | b).sum(), 1)
            assert got[i, j].item() == pytest.approx(want, abs=1e-7)


def test_iou_boxes_agree_with_box_masks():
    from fame_utils.data.transforms import box_mask

    boxes = torch.tensor([[2.0, 1.0, 9.0, 6.0], [0.0, 0.0, 5.5, 11.2]])
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(2, 12, 10, generator=g)
    masks = box_mask(boxes, (12, 10)).bool()
    assert torch.equal(iou_at_thresholds(maps, boxes), iou_at_thresholds(maps, masks))


def test_iou_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        iou_at_thresholds(torch.rand(4, 4), torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        iou_at_thresholds(torch.full((1, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=bool))
    with pytest.raises(ValueError, match="box masks have shape"):
        iou_at_thresholds(torch.rand(1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.bool))


# ----------------------------------------------------------------------------- ranking


def test_constant_map_removes_exactly_p_percent_in_the_seeded_order():
    maps = torch.full((2, 10, 7), 0.5)
    percents = [0, 10, 25, 33.3, 50, 99, 100]
    masks = removal_masks(maps, percents, tie_seed=3)
    counts = masks.flatten(2).sum(-1)
    want = [0, 7, 18, 23, 35, 69, 70]  # round-half-up of p·70/100: 17.5 -> 18, 23.31 -> 23
    assert counts.tolist() == [want, want]
    # all values tie: the first k pixels of the seeded CPU permutation go
    perm = torch.randperm(70, generator=torch.Generator().manual_seed(3))
    for j, k in enumerate(want):
        flat = masks[0, j].flatten()
        assert flat[perm[:k]].all() and flat.sum() == k


def test_many_flat_regions_remove_exact_counts_and_nest():
    g = torch.Generator().manual_seed(3)
    # 16×16 blocks of a few levels: large ties everywhere
    coarse = torch.randint(0, 4, (3, 4, 4), generator=g).float() / 3
    maps = coarse.repeat_interleave(16, 1).repeat_interleave(16, 2)  # (3, 64, 64)
    percents = list(range(0, 101, 5)) + [12.5, 0.1]
    masks = removal_masks(maps, percents)
    n = 64 * 64
    counts = masks.flatten(2).sum(-1)
    for j, p in enumerate(percents):
        assert (counts[:, j] == int(np.floor(p / 100 * n + 0.5))).all()
    # every removed value >= every kept value, and the masks grow with p
    for i in range(3):
        for j in range(len(percents)):
            rem, keep = maps[i][masks[i, j]], maps[i][~masks[i, j]]
            if rem.numel() and keep.numel():
                assert rem.min() >= keep.max()
    order = sorted(range(len(percents)), key=lambda j: percents[j])
    for a, b in zip(order, order[1:]):
        assert (masks[:, a] <= masks[:, b]).all()


def test_random_ties_match_python_sort_with_the_seeded_tiebreak():
    g = torch.Generator().manual_seed(4)
    maps = (torch.rand(2, 6, 5, generator=g) * 4).floor() / 4  # many ties
    maps[0, 0, 0] = -0.0
    maps[0, 0, 1] = 0.0
    percents = list(range(0, 101, 5))
    for seed in (0, 5):
        masks = removal_masks(maps, percents, tie_seed=seed)
        place = torch.empty(30, dtype=torch.long)
        place[torch.randperm(30, generator=torch.Generator().manual_seed(seed))] = torch.arange(30)
        for i in range(2):
            vals = maps[i].flatten().tolist()
            order = sorted(range(30), key=lambda q, vals=vals: (-vals[q], place[q].item()))
            for j, p in enumerate(percents):
                want = torch.zeros(30, dtype=torch.bool)
                want[order[: int(np.floor(p / 100 * 30 + 0.5))]] = True
                assert torch.equal(masks[i, j].flatten(), want)


def test_random_ties_remove_an_all_zero_map_evenly():
    # issue 10: row-major ties removed rows 0-33 of a flat 112 px face at Delete@30 %
    maps = torch.zeros(2, 112, 112)
    removed = removal_masks(maps, [30])[:, 0]  # default: the paper recipe, random, seed 0
    assert removed.flatten(1).sum(1).tolist() == [3763, 3763]  # round(0.3 · 12544)
    rows, cols = removed[0].nonzero(as_tuple=True)
    assert abs(rows.float().mean().item() - 55.5) < 3
    assert abs(cols.float().mean().item() - 55.5) < 3
    # the same order for every map of a batch, and from one CPU-drawn permutation
    assert torch.equal(removed[0], removed[1])
    perm = torch.randperm(112 * 112, generator=torch.Generator().manual_seed(0))
    want = torch.zeros(112 * 112, dtype=torch.bool)
    want[perm[:3763]] = True
    assert torch.equal(removed[0].flatten(), want)
    # another seed, another order; the reference recipe's seed is read from it too
    other = removal_masks(maps, [30], tie_seed=1)[0, 0]
    assert other.sum() == 3763 and not torch.equal(other, removed[0])


def test_reference_ties_follow_the_percentile_rule_on_a_plateau():
    # 10×10 map: 20 pixels at 1.0, 30 at 0.5, 50 at 0. numpy-style percentile (linear):
    # Delete@p removes the pixels > percentile(100 − p):
    #   10 %: q = 90 → position 89.1 → 1.0 → nothing is > 1.0: 0 pixels
    #   25 %: q = 75 → position 74.25 → 0.5 → the 20 pixels at 1.0
    #   30 %: q = 70 → position 69.3 → 0.5 → 20 (the exact-count rule removes 30)
    #   50 %: q = 50 → position 49.5 → (0 + 0.5)/2 = 0.25 → 50
    #   0 %: q = 100 → 1.0 → 0;  100 %: q = 0 → 0.0 → 50 (the zeros stay)
    m = torch.zeros(1, 10, 10)
    m.view(-1)[:20] = 1.0
    m.view(-1)[20:50] = 0.5
    m = m[:, torch.randperm(10, generator=torch.Generator().manual_seed(1))]
    percents = [0, 10, 25, 30, 50, 100]
    masks = removal_masks(m, percents, ties="reference")
    assert masks.flatten(2).sum(-1)[0].tolist() == [0, 0, 20, 20, 50, 50]
    for j, p in enumerate(percents):
        theta = np.percentile(m.numpy(), 100 - p)
        assert torch.equal(masks[0, j], torch.from_numpy(m[0].numpy() > theta))
    with pytest.raises(ValueError, match="'random' or 'reference'"):
        removal_masks(m, [10], ties="stable")


def test_road_and_face_metrics_use_the_tie_rule(tiny_cnn):
    g = torch.Generator().manual_seed(8)
    images = torch.rand(2, 3, 12, 12, generator=g)
    maps = torch.zeros(2, 12, 12)
    maps[:, 3:6, 3:6] = 1.0  # a 9-pixel plateau, the rest flat
    percents = [10, 50]
    for ties in ("random", "reference"):
        drop = road_scores(tiny_cnn, images, [0, 1], maps, percents, ties=ties, tie_seed=3)
        masks = removal_masks(maps, percents, ties=ties, tie_seed=3)
        with torch.no_grad():
            clean = tiny_cnn(images)[[0, 1], [0, 1]]
            for j in range(2):
                x = images * (~masks[:, j]).unsqueeze(1)
                torch.testing.assert_close(drop[:, j], clean - tiny_cnn(x)[[0, 1], [0, 1]])
    embedder = nn.Sequential(*list(tiny_cnn.children())[:-1])
    gallery = nn.functional.normalize(embedder(images.flip(0)), dim=1).detach()
    for ties, seed in (("reference", 0), ("random", 7)):
        res = face_deletion_insertion(
            embedder,
            images.flip(0),
            images,
            [True, False],
            maps,
            threshold=0.5,
            ties=ties,
            tie_seed=seed,
            percents=percents,
        )
        masks = removal_masks(maps, percents, ties=ties, tie_seed=seed)
        with torch.no_grad():
            for j in range(2):
                e = nn.functional.normalize(embedder(images * (~masks[:, j]).unsqueeze(1)), dim=1)
                torch.testing.assert_close(res.delete_similarity[:, j], (e * gallery).sum(1))


# ----------------------------------------------------------------------------- imputation


def _smooth_images(b, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b * 3, h, w, generator=g)
    return gaussian_blur(x, 7, 1.5).view(b, 3, h, w).clamp(0, 1)


def _blob_maps(b, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return gaussian_blur(torch.rand(b, h, w, generator=g), 15, 4.0)


@pytest.mark.parametrize("percent", [10, 30, 50])
def test_noisy_linear_matches_pytorch_grad_cam_without_noise(percent):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    images = _smooth_images(2, 40, 56, seed=6)
    removed = removal_masks(_blob_maps(2, 40, 56, seed=7), [percent])[:, 0]
    ours = noisy_linear_impute(images, removed, noise=0.0)
    ref = NoisyLinearImputer(noise=0.0)
    for i in range(2):
        want = ref(images[i].clone(), (~removed[i]).float())
        assert (ours[i] - want).abs().max().item() < 1e-4
    # kept pixels are untouched, and batched == one image at a time
    assert torch.equal(ours.permute(0, 2, 3, 1)[~removed], images.permute(0, 2, 3, 1)[~removed])
    one = noisy_linear_impute(images[1:], removed[1:], noise=0.0)
    assert (one - ours[1:]).abs().max().item() < 1e-5


def test_noisy_linear_constant_image_full_removal_and_noise():
    flat = torch.full((1, 3, 20, 20), 0.3)
    removed = torch.zeros(1, 20, 20, dtype=torch.bool)
    removed[0, 4:15, 6:18] = True
    out = noisy_linear_impute(flat, removed, noise=0.0)
    assert (out - 0.3).abs().max().item() < 1e-6
    # nothing kept: the system has no data; the removed pixels are filled with 0
    allgone = noisy_linear_impute(flat, torch.ones(1, 20, 20, dtype=torch.bool), noise=0.0)
    assert torch.equal(allgone, torch.zeros_like(flat))
    # the noise is N(0, 0.01²) on the removed pixels only, reproducible with a generator
    gen = torch.Generator().manual_seed(0)
    noisy = noisy_linear_impute(flat, removed, noise=0.01, generator=gen)
    diff = (noisy - out).permute(0, 2, 3, 1)[removed]
    assert diff.std().item() == pytest.approx(0.01, rel=0.1)
    assert abs(diff.mean().item()) < 0.002
    assert torch.equal((noisy - flat).permute(0, 2, 3, 1)[~removed], torch.zeros(400 - 132, 3))
    again = noisy_linear_impute(
        flat, removed, noise=0.01, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy, again)


@pytest.mark.parametrize("noise", [-0.01, float("nan"), float("inf")])
def test_noisy_linear_and_road_refuse_a_negative_or_non_finite_noise(noise):
    from fame_utils.metrics.adapters import RoadMetric

    flat, removed = torch.full((1, 3, 8, 8), 0.3), torch.zeros(1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="imputation noise"):
        noisy_linear_impute(flat, removed, noise=noise)
    with pytest.raises(ValueError, match="imputation noise"):
        RoadMetric(mode="noisy_linear", noise=noise)


# ----------------------------------------------------------------------------- ROAD


class Linear(nn.Module):
    """logit_k = <W_k, x>: the drop under removal is exactly <W_k, x − x̃>."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.weight)


def test_road_zero_on_constant_map_removes_exactly_p_percent():
    model = Linear(torch.ones(2, 3, 10, 10))
    images = torch.ones(2, 3, 10, 10)
    maps = torch.full((2, 10, 10), 0.7)
    drop = road_scores(model, images, [0, 1], maps, [10, 30, 50, 33.3], mode="zero")
    # each removed pixel takes away 3 (one per channel): k = 10, 30, 50, 33
    assert drop.tolist() == [[30.0, 90.0, 150.0, 99.0]] * 2


def test_road_zero_drop_equals_weight_of_removed_pixels():
    g = torch.Generator().manual_seed(8)
    w = torch.randn(3, 3, 12, 12, generator=g)
    model = Linear(w)
    images = torch.rand(4, 3, 12, 12, generator=g)
    labels = torch.tensor([0, 2, 1, 2])
    maps = torch.rand(4, 12, 12, generator=g)
    percents = [10, 30, 50]
    drop = road_scores(model, images, labels, maps, percents, mode="zero", batch_size=5)
    masks = removal_masks(maps, percents)
    for i in range(4):
        for j in range(3):
            want = (w[labels[i]] * images[i] * masks[i, j]).sum()
            assert drop[i, j].item() == pytest.approx(want.item(), abs=1e-4)


def test_road_noisy_linear_without_noise_uses_the_imputed_image():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(9)
    w = torch.randn(2, 3, 24, 24, generator=g)
    model = Linear(w)
    images = _smooth_images(2, 24, 24, seed=10)
    maps = _blob_maps(2, 24, 24, seed=11)
    drop = road_scores(model, images, [1, 0], maps, [30], mode="noisy_linear", noise=0.0)
    masks = removal_masks(maps, [30])[:, 0]
    for i, y in enumerate([1, 0]):
        imputed = NoisyLinearImputer(noise=0.0)(images[i].clone(), (~masks[i]).float())
        want = (w[y] * (images[i] - imputed)).sum()
        assert drop[i, 0].item() == pytest.approx(want.item(), abs=1e-3)


def test_road_endpoints(tiny_cnn):
    g = torch.Generator().manual_seed(12)
    images = torch.rand(3, 3, 16, 16, generator=g)
    maps = torch.rand(3, 16, 16, generator=g)
    labels = torch.tensor([0, 3, 4])
    clean = class_scores(tiny_cnn, images, labels)
    black = class_scores(tiny_cnn, torch.zeros_like(images), labels)
    drop = road_scores(tiny_cnn, images, labels, maps, [0, 100])
    assert drop.shape == (3, 2)
    torch.testing.assert_close(drop[:, 0], torch.zeros(3))
    torch.testing.assert_close(drop[:, 1], clean - black)


def test_road_rejects_mismatched_maps(tiny_cnn):
    with pytest.raises(ValueError, match="maps must have shape"):
        road_scores(tiny_cnn, torch.rand(2, 3, 8, 8), [0, 1], torch.rand(2, 8, 9))
    with pytest.raises(ValueError, match="mode must be"):
        road_scores(tiny_cnn, torch.rand(1, 3, 8, 8), [0], torch.rand(1, 8, 8), mode="blur")
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        removal_masks(torch.rand(1, 4, 4), [150])


# ----------------------------------------------------------------------------- AUC


def test_face_auc_on_an_uneven_grid_and_increasing_percents():
    # two genuine pairs with similarity 0/1 at P = 0, 20, 100: correctness = similarity
    sims = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    pct = torch.tensor([0.0, 20.0, 100.0], dtype=torch.float64)
    res = FacePerturbation(pct, 0.5, torch.tensor([True, True]), sims, sims, torch.ones(2))
    assert res.pair_auc("delete").tolist() == pytest.approx([90.0, 10.0])
    assert res.auc("insert") == pytest.approx(50.0)
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="increasing"):
        face_deletion_insertion(
            HalfMeans(), x, x, [1, 0], torch.rand(2, 8, 8), percents=[0, 50, 50]
        )


# ----------------------------------------------------------------------------- faces


class HalfMeans(nn.Module):
    """φ(x) = (mean of the left half, mean of the right half): cosine is 1 for two
    left-only images, 0 between a left-only and a right-only image."""

    def forward(self, x):
        w = x.shape[-1] // 2
        return torch.stack([x[..., :w].mean((1, 2, 3)), x[..., w:].mean((1, 2, 3))], 1)


def test_face_delete_insert_known_answer():
    left = torch.zeros(3, 8, 8)
    left[:, :, :4] = 0.8
    right = torch.zeros(3, 8, 8)
    right[:, :, 4:] = 0.6
    gallery = torch.stack([left, right])  # pair 0 genuine, pair 1 impostor
    probe = torch.stack([left, left])
    maps = torch.zeros(2, 8, 8)
    maps[:, :, :4] = 1.0  # e₊ points at the left half (32 of 64 pixels, all tied)
    res = face_deletion_insertion(HalfMeans(), gallery, probe, [True, False], maps, threshold=0.5)
    # Delete: the genuine probe keeps some left pixel up to 40 % (k = 26 < 32), none from
    # 50 % on (cos 0 -> wrong); the impostor stays at cos 0 (< θ, right) throughout.
    assert res.correct("delete").float().mean(0).tolist() == [1.0] * 5 + [0.5] * 6
    assert res.auc("delete") == pytest.approx(72.5)
    # Insert: at 0 % the probe is black (genuine wrong), from 10 % on everything is right.
    assert res.correct("insert").float().mean(0).tolist() == [0.5] + [1.0] * 10
    assert res.auc("insert") == pytest.approx(97.5)
    torch.testing.assert_close(res.delete_similarity[0], torch.tensor([1.0] * 5 + [0.0] * 6))
    assert res.pair_auc("delete").mean().item() == pytest.approx(72.5)
    assert res.pair_auc("insert").tolist() == pytest.approx([95.0, 100.0])
    torch.testing.assert_close(res.clean_similarity, torch.tensor([1.0, 0.0]))


def test_face_delete_insert_matches_reference_loop(tiny_cnn):
    torch.manual_seed(13)
    embedder = nn.Sequential(*list(tiny_cnn.children())[:-1])  # 16-D embeddings
    g = torch.Generator().manual_seed(14)
    n = 6
    gallery = torch.rand(n, 3, 12, 12, generator=g)
    probe = (gallery + 0.5 * torch.rand(n, 3, 12, 12, generator=g)).clamp(0, 1)
    probe[3:] = torch.rand(3, 3, 12, 12, generator=g)
    genuine = torch.tensor([1, 1, 1, 0, 0, 0]).bool()
    maps = torch.rand(n, 12, 12, generator=g)
    res = face_deletion_insertion(embedder, gallery, probe, genuine, maps, batch_size=7)

    def cos(a, b):
        ea, eb = embedder(a), embedder(b)
        return torch.nn.functional.cosine_similarity(ea, eb, dim=1)

    with torch.no_grad():
        clean = cos(gallery, probe)
        theta = eer_threshold(clean.numpy(), genuine.numpy())
        assert res.threshold == theta
        ps = list(range(0, 101, 10))
        for kind in ("delete", "insert"):
            acc = []
            for j, p in enumerate(ps):
                k = int(np.floor(p / 100 * 144 + 0.5))
                pert = probe.clone()
                for i in range(n):
                    order = sorted(range(144), key=lambda q, i=i: (-maps[i].flatten()[q].item(), q))
                    top = torch.zeros(144, dtype=torch.bool)
                    top[order[:k]] = True
                    keep = ~top if kind == "delete" else top
                    pert[i] = probe[i] * keep.view(1, 12, 12)
                s = cos(gallery, pert)
                torch.testing.assert_close(res.similarity(kind)[:, j], s, atol=1e-5, rtol=0)
                acc.append(
                    float(np.mean((s.numpy() >= theta) == genuine.numpy()))
                )  # s >= θ accepts
            assert res.correct(kind).float().mean(0).tolist() == pytest.approx(acc)
            want = np.trapezoid(acc, np.array(ps) / 100) * 100
            assert res.auc(kind) == pytest.approx(want)


# ----------------------------------------------------------------------------- box size


def test_a_constant_map_scores_the_box_area_share_at_every_threshold():
    from fame_utils.metrics.localization import box_area_shares

    # 10 × 10 image; boxes (x0, y0, x1, y1) exclusive at (x1, y1): 5 × 5 = 25 px and
    # 10 × 4 = 40 px of 100
    boxes = torch.tensor([[2.0, 3.0, 7.0, 8.0], [0.0, 6.0, 10.0, 10.0]])
    maps = torch.ones(2, 10, 10)
    iou = iou_at_thresholds(maps, boxes, [0.3, 0.5, 0.7, 1.0])
    assert torch.allclose(iou, torch.tensor([[0.25] * 4, [0.40] * 4]))
    assert box_area_shares(boxes, (10, 10)).tolist() == [0.25, 0.40]


def test_size_strata_split_at_one_and_two_thirds_with_counts():
    from fame_utils.metrics.localization import (
        SIZE_STRATA,
        box_area_table,
        iou_by_box_size,
        size_strata,
    )

    shares = [0.10, 0.33, 0.34, 0.66, 0.67, 1.0]
    assert size_strata(shares) == ["small", "small", "medium", "medium", "large", "large"]
    assert SIZE_STRATA["small"] == (0.0, 1 / 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        size_strata([1.5])
    table = box_area_table({"toy": shares})
    assert table.loc["toy", "n"] == 6
    assert table.loc["toy", ["n small", "n medium", "n large"]].tolist() == [2, 2, 2]
    assert table.loc["toy", "median %"] == pytest.approx(50.0)  # (34 + 66) / 2
    assert table.loc["toy", "mean %"] == pytest.approx(100 * sum(shares) / 6)
    # items 0, 2, 5 only (small, medium, large: one each); means per stratum, n in the name
    import pandas as pd

    per_item = {"IoU@0.3": pd.DataFrame({"A": [10.0, 20.0, 30.0]}, index=[0, 2, 5])}
    by_size = iou_by_box_size(per_item, shares)
    assert list(by_size.columns) == [
        "IoU@0.3 small (n=1)",
        "IoU@0.3 medium (n=1)",
        "IoU@0.3 large (n=1)",
    ]
    assert by_size.loc["A"].tolist() == [10.0, 20.0, 30.0]
    with pytest.raises(ValueError, match="out of range"):
        iou_by_box_size({"c": pd.DataFrame({"A": [1.0]}, index=[9])}, shares)


def test_table2_metrics_keep_both_road_removals_as_separate_columns():
    from fame_utils.metrics.adapters import table2_metrics

    metrics = table2_metrics((0.5,), (10, 30))
    labels = [c.label for m in metrics for c in m.columns()]
    assert labels == [
        "IoU@0.5",
        "ROAD-Delete@10%",
        "ROAD-Delete@30%",
        "ROAD-NL-Delete@10%",
        "ROAD-NL-Delete@30%",
    ]
    assert [m.mode for m in metrics[1:]] == ["zero", "noisy_linear"]
    with pytest.raises(ValueError, match="modes is empty"):
        table2_metrics(modes=())


def test_face_delete_insert_finer_grid_known_answer():
    """A 2 % grid on the known-answer pair: the genuine probe keeps a left pixel while
    k = round(P/100 · 64) < 32, i.e. up to P = 48 % (k = 31), and loses it from 50 % on."""
    left = torch.zeros(3, 8, 8)
    left[:, :, :4] = 0.8
    right = torch.zeros(3, 8, 8)
    right[:, :, 4:] = 0.6
    gallery, probe = torch.stack([left, right]), torch.stack([left, left])
    maps = torch.zeros(2, 8, 8)
    maps[:, :, :4] = 1.0
    fine = list(range(0, 101, 2))
    res = face_deletion_insertion(
        HalfMeans(), gallery, probe, [True, False], maps, threshold=0.5, percents=fine
    )
    want = [1.0 if p <= 48 else 0.5 for p in fine]
    assert res.correct("delete").float().mean(0).tolist() == want
    assert res.auc("delete") == pytest.approx(100 * np.trapezoid(want, np.array(fine) / 100))
    assert res.auc("delete") == pytest.approx(74.5)  # the 10 % grid gives 72.5
    coarse = face_deletion_insertion(
        HalfMeans(), gallery, probe, [True, False], maps, threshold=0.5
    )
    on_both = [fine.index(p) for p in range(0, 101, 10)]
    torch.testing.assert_close(res.delete_similarity[:, on_both], coarse.delete_similarity)
