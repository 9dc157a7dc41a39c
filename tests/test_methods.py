"""The method registry: one place that makes every method by name for a task."""

from __future__ import annotations

import pytest

from fame_utils.baselines import FGGB, CorrRISE, GradCAM, classification_methods, face_methods
from fame_utils.core import FameConfig
from fame_utils.explain import ClassTarget, Fame
from fame_utils.methods import (
    available_methods,
    cache_settings,
    get_spec,
    make_methods,
    supports,
    table_methods,
)


def test_available_methods_follow_the_declared_targets():
    assert available_methods("classification") == [
        "fame",
        "gradcam",
        "gradcam-ew",
        "hirescam",
        "fullgrad",
        "corrrise",
        "constant",
        "random",
        "centre",
    ]
    assert available_methods("verification") == [
        "fame",
        "gradcam",
        "gradcam-ew",
        "corrrise",
        "fggb",
        "constant",
        "random",
        "centre",
    ]
    with pytest.raises(ValueError, match="task must be"):
        available_methods("segmentation")


def test_names_ignore_case_and_punctuation_and_keep_the_order_given():
    methods = make_methods(["Grad-CAM-EW", "gradcam_ew", "FAME"], "classification")
    assert [m.name for m in methods] == ["Grad-CAM-EW", "Grad-CAM-EW", "FAME"]
    assert get_spec("grad cam").key == "gradcam"


def test_bad_names_tasks_and_settings_give_clear_errors():
    with pytest.raises(ValueError, match=r"unknown method 'lime'; choose from \['fame'"):
        make_methods(["lime"], "classification")
    with pytest.raises(ValueError, match="fggb does not support classification"):
        make_methods(["fggb"], "classification")
    with pytest.raises(ValueError, match="hirescam does not support verification"):
        make_methods(["hirescam"], "verification")
    with pytest.raises(TypeError, match=r"unknown method settings \['n_mask'\]"):
        make_methods(["corrrise"], "verification", n_mask=10)


def test_settings_reach_only_the_methods_that_read_them():
    cfg = FameConfig(iterations=3, progress=False)
    fame, rise, fggb = make_methods(
        ["fame", "corrrise", "fggb"], "verification", fame_config=cfg, n_masks=7, threshold=0.25
    )
    assert fame.config is cfg and rise.n_masks == 7 and fggb.threshold == 0.25
    assert make_methods(["fggb"], "verification", threshold=None)[0].threshold is None


def test_paper_table_shortcuts_are_the_registry():
    assert table_methods("classification") == [
        "fame",
        "gradcam",
        "gradcam-ew",
        "hirescam",
        "fullgrad",
    ]
    assert [m.name for m in classification_methods()] == [
        m.name for m in make_methods(table_methods("classification"), "classification")
    ]
    faces = face_methods(0.3, n_masks=11, seed=2)
    assert [m.name for m in faces] == ["Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"]
    assert faces[2].n_masks == 11 and faces[2].seed == 2 and faces[3].threshold == 0.3


def test_cache_settings_leave_out_speed_and_display_fields():
    rise = cache_settings(CorrRISE(n_masks=9, batch_size=3, progress=True))
    assert rise["n_masks"] == 9 and not {"batch_size", "progress", "name"} & set(rise)
    assert not {"chunk_size", "progress"} & set(cache_settings(FGGB(0.2, chunk_size=4)))
    fame = cache_settings(Fame(FameConfig(iterations=4, progress=False, batch_size=2)))
    assert fame["config"]["iterations"] == 4 and fame["recipe"] is None
    assert not {"progress", "batch_size", "early_stop_check_every"} & set(fame["config"])
    cam = cache_settings(GradCAM())
    assert cam["target_layer"] is None and "name" not in cam

    def plain(model, images, target):
        return None

    plain.name = "plain"
    assert cache_settings(plain) == {"function": f"{__name__}.{plain.__qualname__}"}


def test_supports_reads_the_declared_targets():
    assert supports(Fame(), "verification") and supports(Fame(), "classification")
    assert supports(FGGB(), "verification") and not supports(FGGB(), "classification")

    class OnlyClasses:
        name = "only"
        targets = (ClassTarget,)

    assert supports(OnlyClasses(), "classification") and not supports(OnlyClasses(), "verification")


def test_face_cams_take_the_recipes_target_where_they_offer_one():
    from dataclasses import dataclass

    from fame_utils.methods import _face_cam_option
    from fame_utils.recipes import REFERENCE

    @dataclass
    class WithTarget:
        face_target: str = "cosine"

    @dataclass
    class WithRecipe:
        recipe: object = None

    class Without:
        pass

    assert _face_cam_option(WithTarget, REFERENCE) == {"face_target": "constant_norm"}
    assert _face_cam_option(WithRecipe, REFERENCE) == {"recipe": REFERENCE}
    assert _face_cam_option(Without, REFERENCE) == {}
    cams = make_methods(["gradcam"], "verification", recipes=("paper", "reference"))
    offered = bool(_face_cam_option(GradCAM, REFERENCE))
    assert [m.name for m in cams] == (
        ["Grad-CAM (paper)", "Grad-CAM (reference)"] if offered else ["Grad-CAM"]
    )
