"""Sanity baselines (issue 23): maps without information, under the shared convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fame_utils import ClassLogit, CosineSimilarity
from fame_utils.baselines.sanity import BASELINE_NAMES, Centre, Constant, Random
from fame_utils.experiment.keys import method_key
from fame_utils.methods import make_methods, supports


@pytest.fixture
def images():
    return torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(0))


TARGETS = [ClassLogit([1, 2, 3]), CosineSimilarity(torch.randn(3, 8))]


@pytest.mark.parametrize("method", [Constant(), Random(), Centre()], ids=lambda m: m.name)
@pytest.mark.parametrize("target", TARGETS, ids=["class", "similarity"])
def test_maps_have_the_images_shape_lie_in_unit_range_and_ignore_model_and_target(
    method, target, images
):
    a = method(None, images, target)
    assert a.negative is None
    assert a.positive.shape == (3, 40, 56) and a.positive.dtype == torch.float32
    assert a.positive.device == images.device
    assert float(a.positive.min()) >= 0 and float(a.positive.max()) <= 1
    # the model and the target play no part
    b = method(torch.nn.Identity(), images * 0, TARGETS[0])
    assert torch.equal(a.positive, b.positive)


def test_constant_is_all_ones():
    assert torch.equal(
        Constant()(None, torch.zeros(2, 3, 4, 5), None).positive, torch.ones(2, 4, 5)
    )


def test_random_is_seeded_noise_blurred_with_fames_kernel(images):
    a = Random(seed=4)(None, images, None).positive
    assert torch.equal(a, Random(seed=4)(None, images, None).positive)
    assert not torch.equal(a, Random(seed=5)(None, images, None).positive)
    assert not torch.equal(a[0], a[1])  # each map of the batch has its own noise
    # oracle: the same uniform draw through scipy's Gaussian (σ 7.7, radius 24 = kernel 49,
    # mirror borders), then min-max scaled
    noise = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(4)).double().numpy()
    ref = np.stack([gaussian_filter(n, 7.7, mode="mirror", radius=24) for n in noise])
    lo = ref.min(axis=(1, 2), keepdims=True)
    ref = (ref - lo) / (ref.max(axis=(1, 2), keepdims=True) - lo)
    assert np.allclose(a.numpy(), ref, atol=1e-4)
    assert a.amin((1, 2)).tolist() == [0, 0, 0] and a.amax((1, 2)).tolist() == [1, 1, 1]


def test_centre_is_a_centred_gaussian_of_a_quarter_side():
    m = Centre()(None, torch.zeros(1, 3, 41, 61), None).positive[0]
    assert float(m[20, 30]) == pytest.approx(1.0)  # odd sides: a pixel at the centre
    # σ = side / 4 per axis (61 / 4 = 15.25 across, 41 / 4 = 10.25 down), hand-computed
    assert float(m[20, 45]) == pytest.approx(math.exp(-0.5 * (15 / 15.25) ** 2))
    assert float(m[10, 30]) == pytest.approx(math.exp(-0.5 * (10 / 10.25) ** 2))
    assert float(m[10, 45]) == pytest.approx(
        math.exp(-0.5 * ((15 / 15.25) ** 2 + (10 / 10.25) ** 2))
    )
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.flip(1))
    with pytest.raises(ValueError, match="width must be > 0"):
        Centre(width=0)


def test_baselines_are_registered_for_both_tasks_and_keyed_by_their_settings():
    for task in ("classification", "verification"):
        made = make_methods(["constant", "random", "centre"], task, seed=7)
        assert tuple(m.name for m in made) == BASELINE_NAMES
        assert all(supports(m, task) for m in made)
    key = method_key(made[1])
    assert {k: key[k] for k in ("seed", "kernel_size", "sigma")} == {
        "seed": 7,
        "kernel_size": 49,
        "sigma": "7.7",
    }
    assert set(method_key(made[0])) == {"type"}
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        Random()(None, torch.zeros(3, 4, 5), None)


def test_the_bundled_set_with_composites_has_a_real_small_stratum():
    from fame_utils.data.objects import OBJECTS_DIR, load_sample_objects, read_annotations
    from fame_utils.data.transforms import load_image
    from fame_utils.metrics.localization import box_area_shares, size_strata

    photos = load_sample_objects()
    both = load_sample_objects(synthetic=True)
    assert len(both) == len(photos) + 12 and both.names[: len(photos)] == photos.names
    strata = size_strata(box_area_shares(both.boxes, (224, 224)))
    assert strata[len(photos) :] == ["small"] * 12
    assert strata.count("small") >= 10  # ranking_sentences' MIN_ITEMS
    # the pasted rectangle is the box: composites stored at 320 px, boxes inside 20..300
    rows = read_annotations(OBJECTS_DIR / "composites")
    files = [OBJECTS_DIR / "composites" / r.file for r in rows]
    assert [tuple(load_image(f).shape[-2:]) for f in files] == [(320, 320)] * 12
    assert all(20 <= v <= 300 for r in rows for v in r.box)


def test_figures_draw_baselines_as_a_grey_band_not_as_bars():
    import matplotlib.pyplot as plt
    import pandas as pd

    from fame_utils.plotting import draw_bars, table2_groups

    ours = pd.DataFrame(
        {"IoU@0.3": [50.0, 60.0, 40.0], "ROAD-NL-Delete@10%": [1.0, 0.1, 0.2]},
        index=["FAME", "Constant", "Random"],
    )
    groups = table2_groups(ours.columns)
    assert groups == {"IoU ×100": ["IoU@0.3"], "logit drop (noisy-linear)": ["ROAD-NL-Delete@10%"]}
    fig = draw_bars({"ours": ours}, groups)
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.containers] == ["FAME"]  # one bar series only
    (band,) = ax.collections[:1]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(40.0) and ys.max() == pytest.approx(60.0)
    assert any("sanity baselines" in t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)
