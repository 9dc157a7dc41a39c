"""The method registry and the one calling convention: what you configure is what runs."""

from __future__ import annotations

import dataclasses

import pytest

from fame_utils import ClassLogit, Fame, FameConfig, get_recipe
from fame_utils.baselines.cam import GradCAM
from fame_utils.baselines.corrrise import CorrRISE
from fame_utils.baselines.fggb import FGGB
from fame_utils.experiment.keys import method_key
from fame_utils.methods import (
    METHODS,
    available_methods,
    make_methods,
    registry_key,
    supports,
    table_methods,
)
from fame_utils.recipes import REFERENCE


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
    assert registry_key("grad cam") == "gradcam" and registry_key("Grad-CAM-EW") == "gradcam-ew"


def test_bad_names_tasks_and_settings_give_clear_errors():
    with pytest.raises(ValueError, match=r"unknown method 'lime'; choose from \['fame'"):
        make_methods(["lime"], "classification")
    with pytest.raises(ValueError, match="fggb does not support classification"):
        make_methods(["fggb"], "classification")
    with pytest.raises(ValueError, match="hirescam does not support verification"):
        make_methods(["hirescam"], "verification")
    with pytest.raises(TypeError, match=r"unknown method settings \[.n_mask.\]"):
        make_methods(["corrrise"], "verification", n_mask=10)
    with pytest.raises(ValueError, match="either config= or fame_settings="):
        make_methods(["fame"], "verification", config=FameConfig(), fame_settings={"sigma": 1})


def test_settings_reach_only_the_methods_that_have_them():
    cfg = FameConfig(iterations=3, progress=False)
    fame, rise, fggb, cam = make_methods(
        ["fame", "corrrise", "fggb", "gradcam"],
        "verification",
        config=cfg,
        n_masks=7,
        threshold=0.25,
        target_layer="layer4",
    )
    assert fame.config is cfg and rise.n_masks == 7 and fggb.threshold == 0.25
    assert cam.target_layer == "layer4"  # issue 17: refused before
    assert make_methods(["fggb"], "verification", threshold=None)[0].threshold is None


def test_each_task_gets_the_recipes_config_and_a_given_config_runs_as_given():
    (cls,) = make_methods(["fame"], "classification")
    (ver,) = make_methods(["fame"], "verification")
    assert cls.config == FameConfig() == FameConfig.paper("classification")
    assert ver.config == FameConfig.paper("verification")
    assert (ver.config.step_space, ver.config.early_stop) == ("pixel", 0.01)
    (ref,) = make_methods(["fame"], "classification", recipe="reference")
    assert ref.config == REFERENCE.fame_config("classification")
    assert (ref.config.normalization, ref.config.absolute_logit, ref.config.early_stop) == (
        "minmax",
        True,
        1e-3,
    )
    # a config given without a recipe is never rewritten, whatever the task
    mine = FameConfig(iterations=7, step_space="normalized")
    assert make_methods(["fame"], "verification", config=mine)[0].config is mine
    # every field shows in print(method)
    text = repr(ver)
    assert all(f"{f.name}=" in text for f in dataclasses.fields(FameConfig))


def test_a_recipe_and_a_config_that_disagree_raise_naming_the_fields():
    with pytest.raises(
        ValueError, match=r"normalization='max' \(recipe: 'minmax'\).*absolute_logit"
    ):
        make_methods(["fame"], "classification", recipe="reference", config=FameConfig())
    with pytest.raises(ValueError, match=r"step_space='normalized' \(recipe: 'pixel'\)"):
        get_recipe("paper").check_config(FameConfig(), "verification")
    ok = REFERENCE.fame_config("verification", iterations=5)
    assert make_methods(["fame"], "verification", recipe="reference", config=ok)[0].config is ok
    with pytest.raises(ValueError, match="face_target='cosine' disagrees with recipe 'reference'"):
        make_methods(["gradcam"], "verification", recipe="reference", face_target="cosine")


def test_recipes_make_recipe_dependent_methods_once_per_recipe():
    methods = make_methods(
        ["fame", "gradcam", "corrrise"],
        "verification",
        recipes=("paper", "reference"),
        fame_settings={"iterations": 9},
    )
    assert [m.name for m in methods] == [
        "FAME (paper)",
        "FAME (reference)",
        "Grad-CAM (paper)",
        "Grad-CAM (reference)",
        "CorrRISE",
    ]
    assert methods[0].config == FameConfig.paper("verification", iterations=9)
    assert methods[1].config == REFERENCE.fame_config("verification", iterations=9)
    assert (methods[2].face_target, methods[3].face_target) == ("cosine", "constant_norm")
    # classification: the CAMs do not depend on the recipe
    cls = make_methods(["fame", "gradcam"], "classification", recipes=("paper", "reference"))
    assert [m.name for m in cls] == ["FAME (paper)", "FAME (reference)", "Grad-CAM"]


def test_paper_tables_are_registry_keys():
    assert table_methods("classification") == [
        "fame",
        "gradcam",
        "gradcam-ew",
        "hirescam",
        "fullgrad",
    ]
    assert set(table_methods("verification")) <= set(METHODS)


def test_cache_keys_leave_out_speed_and_display_fields():
    rise = method_key(CorrRISE(n_masks=9, batch_size=3))
    assert rise["n_masks"] == 9 and not {"batch_size", "progress", "name"} & set(rise)
    assert not {"chunk_size", "progress"} & set(method_key(FGGB(0.2, chunk_size=4)))
    fame = method_key(Fame(FameConfig(iterations=4, progress=False, batch_size=2)))
    assert fame["config"]["iterations"] == 4
    assert not {"progress", "batch_size", "early_stop_check_every"} & set(fame["config"])
    assert fame == method_key(Fame(FameConfig(iterations=4)))  # same maps, same key
    cam = method_key(GradCAM())
    assert cam["target_layer"] is None and "name" not in cam


def test_supports_reads_the_declared_targets():
    assert supports(Fame(), "verification") and supports(Fame(), "classification")
    assert supports(FGGB(), "verification") and not supports(FGGB(), "classification")

    class OnlyClasses:
        name = "only"
        targets = (ClassLogit,)

    assert supports(OnlyClasses(), "classification") and not supports(OnlyClasses(), "verification")


def test_fame_run_gives_the_delta_behind_its_maps_and_passes_the_hook(tiny_cnn):
    import torch

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fame = Fame(FameConfig(iterations=4, progress=False, kernel_size=5, sigma=1.0))
    seen = []
    hook = {"callback": lambda d, i, loss: seen.append(i) or i >= 2, "callback_every": 1}
    result = fame.run(tiny_cnn, x, ClassLogit([0, 1]), **hook)
    assert seen == [1, 2] and result.steps.tolist() == [2, 2]  # stopped by the hook
    full = fame.run(tiny_cnn, x, ClassLogit([0, 1]))
    assert torch.equal(full.maps(), fame(tiny_cnn, x, ClassLogit([0, 1])).positive)
