"""What bfloat16 / channels_last (/ compile) do to FAME's maps on the bundled objects,
against float32 eager at the same settings (issue 12: defaults for the notebooks).

    python benchmarks/precision_maps.py [--images 3] [--iterations 500]
        [--settings bfloat16 channels_last] [--sigmas 1.5 7.7] [--device cpu] [--faces]

``--faces``: the embedded dlib face network instead, on the first ``--images`` genuine
pairs of the bundled occlusion protocol (e₊ objective: the probe's cosine similarity to
the frozen gallery embedding, pixel steps, no early stop so every run takes the same steps).

For each setting: the per-image Pearson r and max |difference| of its maps against the
float32 eager maps (blurred at each σ in ``--sigmas``, kernel 49, max-normalised), and
the time of the run against the float32 run (CPU time on a CPU, wall time on a GPU; the
first run also pays kernel set-up), all from this one run.
"""

from __future__ import annotations

import argparse
import time

import torch

from fame_utils import FameConfig, run_fame
from fame_utils.data.faces import load_sample_faces
from fame_utils.data.objects import load_sample_objects
from fame_utils.models.classifiers import load_classifier
from fame_utils.models.faces import load_face_model
from fame_utils.objectives import ClassLogit, CosineSimilarity
from fame_utils.stats import map_pearson

SETTINGS = {
    "bfloat16": {"precision": "bfloat16"},
    "float16": {"precision": "float16"},
    "channels_last": {"channels_last": True},
    "bfloat16+channels_last": {"precision": "bfloat16", "channels_last": True},
    "compile": {"compile": True},
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=3, help="first N labelled bundled objects")
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument(
        "--settings", nargs="+", default=["bfloat16", "channels_last"], choices=sorted(SETTINGS)
    )
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1.5, 7.7])
    ap.add_argument("--device", default=None)
    ap.add_argument("--faces", action="store_true", help="dlib face network on bundled pairs")
    args = ap.parse_args(argv)

    cfg = FameConfig(iterations=args.iterations, progress=True)
    if args.faces:
        model = load_face_model("dlib_resnet", device=args.device)
        device = next(model.parameters()).device
        pairs = load_sample_faces("occlusion", size=model.input_size, device=device)
        pairs = pairs.select(genuine=True)
        x = pairs.probe[: args.images]
        with torch.no_grad():
            objective = CosineSimilarity(model(pairs.gallery[: args.images]))
        cfg = cfg.replace(step_space="pixel", early_stop=None)
        what = f"dlib ResNet on {device}, {len(x)} genuine occlusion pairs"
    else:
        model = load_classifier(device=args.device)
        device = next(model.parameters()).device
        data = load_sample_objects(device=device)
        labelled = data.labels >= 0
        x, t = data.images[labelled][: args.images], data.labels[labelled][: args.images]
        names = [n for n, keep in zip(data.names, labelled.tolist()) if keep][: args.images]
        objective = ClassLogit(t)
        what = f"EfficientNet-Lite0 on {device}, objects {names}"
    print(
        f"{what}, {args.iterations} iterations, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )

    now = time.perf_counter if device.type == "cuda" else time.process_time  # see fame_speed

    def timed_run(**options):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = now()
        result = run_fame(model, x, objective, cfg, **options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result, now() - t0

    base, t_base = timed_run()
    print()
    print("| setting | σ | Pearson r per image | max abs diff | time vs float32 |")
    print("|---|---:|---|---:|---:|")
    for setting in args.settings:
        result, secs = timed_run(**SETTINGS[setting])
        for sigma in args.sigmas:
            ours, ref = result.maps(sigma=sigma), base.maps(sigma=sigma)
            r = ", ".join(f"{v:.4f}" for v in map_pearson(ours, ref).tolist())
            diff = float((ours - ref).abs().max())
            print(f"| {setting} | {sigma:g} | {r} | {diff:.3f} | {secs / t_base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
