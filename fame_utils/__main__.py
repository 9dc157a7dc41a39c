"""Command line: ``python -m fame_utils {imagenet,faces} ...`` (also ``fame-utils``).

Runs :func:`fame_utils.experiment.run_experiment` with methods from the registry
(:mod:`fame_utils.methods`) and prints the summary table (means with 95 % bootstrap
intervals). ``--recipe reference`` switches every choice on which the paper's text and
the code behind its tables differ (:mod:`fame_utils.recipes`). Examples::

    # Table 2 metrics on the bundled annotated images with the embedded EfficientNet-Lite0
    python -m fame_utils imagenet --methods fame,gradcam --iterations 100 --out runs/objects

    # the paper's protocol: ImageNet val (5 per class), torchvision ResNet-50 V2 weights
    python -m fame_utils imagenet --model resnet50 --weights IMAGENET1K_V2 \\
        --imagenet-root ~/data/imagenet --per-class 5 --out runs/imagenet

    # Table 1 metrics on the bundled face pairs (occlusion subset) with dlib's ResNet
    python -m fame_utils faces --subset occlusion --methods fame,gradcam,corrrise --out runs/faces

    # the same under the reference code's choices (min-max maps, |z_o|, reference ties, ...)
    python -m fame_utils faces --recipe reference --out runs/faces-reference

Outputs in ``--out``: ``results.csv`` (one row per item × method × metric column, with
``threshold``/``percent`` columns), ``summary.md``, ``summary.tex``, ``summary.csv``,
``run.json`` (recipe, seeds) and the map cache ``cache/`` (re-running resumes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .core import FameConfig
from .data.items import from_face_pairs, from_object_samples
from .experiment import run_experiment
from .methods import available_methods, make_methods, table_methods
from .metrics.adapters import FaceDeleteInsertMetric, IoUMetric, RoadMetric
from .recipes import RECIPES, get_recipe

__all__ = ["main", "build_parser"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (results, summaries, cache)")
    p.add_argument("--cache-dir", default=None, help="map cache folder (default OUT/cache)")
    p.add_argument("--checkpoint", default=None, help="model weights file")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--iterations", type=int, default=500, help="FAME iterations (paper: 500)")
    p.add_argument("--batch-size", type=int, default=16, help="images per map batch")
    p.add_argument("--eval-batch-size", type=int, default=64, help="perturbed images per forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="paper",
        help="paper: the paper's text; reference: the code behind its tables",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m fame_utils``."""
    parser = argparse.ArgumentParser(
        prog="python -m fame_utils",
        description="Evaluate FAME and baselines (paper Tables 1 and 2) with caching/resume.",
    )
    sub = parser.add_subparsers(dest="task", required=True)

    im = sub.add_parser("imagenet", help="IoU@t and ROAD-Delete@p (Table 2)")
    _common(im)
    im.add_argument("--model", default="efficientnet_lite0", help="classifier name")
    im.add_argument("--weights", default=None, help="torchvision weights tag for ResNets")
    im.add_argument(
        "--methods",
        default=",".join(table_methods("classification")),
        help=f"comma-separated, from {','.join(available_methods('classification'))}",
    )
    im.add_argument("--imagenet-root", default=None, help="ImageNet folder (default: bundled)")
    im.add_argument("--annotations", default=None, help="LOC_val_solution.csv or XML folder")
    im.add_argument("--synset-mapping", default=None, help="LOC_synset_mapping.txt")
    im.add_argument("--per-class", type=int, default=5, help="images per class (paper: 5)")
    im.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    im.add_argument("--resize", type=int, default=None, help="shorter side (default: model's)")
    im.add_argument(
        "--box-convention",
        choices=("aspect", "per_axis"),
        default=None,
        help="box mapping through Resize + CenterCrop (default: the recipe's)",
    )
    im.add_argument("--iou-thresholds", type=_floats, default=(0.3, 0.5, 0.7))
    im.add_argument("--road-percents", type=_floats, default=(10, 30, 50))
    im.add_argument("--road-mode", choices=("zero", "noisy_linear", "both"), default="zero")

    fa = sub.add_parser("faces", help="face Deletion / Insertion (Table 1)")
    _common(fa)
    fa.add_argument("--model", default="dlib_resnet", help="face model name")
    fa.add_argument(
        "--methods",
        default=",".join(table_methods("verification")),
        help=f"comma-separated, from {','.join(available_methods('verification'))}",
    )
    fa.add_argument("--subset", default="occlusion", help="bundled subset (default occlusion)")
    fa.add_argument("--protocol", default=None, help="pair protocol CSV (G, P, T columns)")
    fa.add_argument("--face-root", default=None, help="folder the protocol's paths refer to")
    fa.add_argument("--max-pairs", type=int, default=None, help="use only the first N pairs")
    fa.add_argument("--n-masks", type=int, default=500, help="CorrRISE masks (paper: 500)")
    fa.add_argument("--threshold", type=float, default=None, help="θ (default: clean EER)")
    return parser


def _imagenet(args) -> tuple:
    from .models.classifiers import load_classifier

    kwargs = {"checkpoint": args.checkpoint, "device": args.device}
    if args.weights is not None:
        kwargs["weights"] = args.weights
    model = load_classifier(args.model, **kwargs)
    recipe = get_recipe(args.recipe)
    boxes = args.box_convention or recipe.box_convention
    crop = int(getattr(model, "input_size", 224))
    resize = args.resize or getattr(model, "resize_size", None) or 256
    if args.imagenet_root:
        from .data.imagenet import load_imagenet_val

        data = load_imagenet_val(
            args.imagenet_root,
            per_class=args.per_class,
            seed=args.seed,
            max_images=args.max_images,
            resize=resize,
            crop=crop,
            box_convention=boxes,
            annotations=args.annotations,
            synset_mapping=args.synset_mapping,
        )
    else:
        from .data.objects import load_sample_objects

        s = load_sample_objects(resize=resize, crop=crop, convention=boxes)
        if args.max_images is not None:
            s = s[: args.max_images]
        data = from_object_samples(s)
    cfg = FameConfig(iterations=args.iterations, progress=False)
    names = [n for n in args.methods.split(",") if n.strip()]
    methods = make_methods(names, "classification", recipe=recipe, fame_config=cfg)
    metrics = [IoUMetric(args.iou_thresholds)]
    modes = ("zero", "noisy_linear") if args.road_mode == "both" else (args.road_mode,)
    metrics += [RoadMetric(args.road_percents, mode=m) for m in modes]
    return model, data, methods, metrics, None


def _faces(args) -> tuple:
    from .models.faces import load_face_model

    model = load_face_model(args.model, checkpoint=args.checkpoint, device=args.device)
    size = int(getattr(model, "input_size", 150))
    if args.protocol:
        from .data.faces import load_face_protocol

        pairs = load_face_protocol(args.protocol, args.face_root, size=size)
    else:
        from .data.faces import load_sample_faces

        pairs = load_sample_faces(args.subset, size=size)
    threshold = args.threshold
    if args.max_pairs is not None and args.max_pairs < len(pairs):
        if threshold is None:  # the protocol's clean EER threshold, not the subset's
            from .metrics import cosine_scores, eer_threshold

            clean = cosine_scores(model, pairs.gallery, pairs.probe)
            threshold = float(eer_threshold(clean, pairs.genuine))
        pairs = pairs.subset(slice(0, args.max_pairs))
    data = from_face_pairs(pairs)
    cfg = FameConfig(iterations=args.iterations, progress=False)
    methods = make_methods(
        [n for n in args.methods.split(",") if n.strip()],
        "verification",
        recipe=args.recipe,
        fame_config=cfg,
        threshold=threshold,
        n_masks=args.n_masks,
        seed=args.seed,
    )
    return model, data, methods, [FaceDeleteInsertMetric()], threshold


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 on success, 2 on a usage/data error)."""
    args = build_parser().parse_args(argv)
    try:
        model, data, methods, metrics, threshold = (
            _imagenet(args) if args.task == "imagenet" else _faces(args)
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = run_experiment(
        model,
        data,
        methods,
        metrics,
        args.out,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        cache_dir=args.cache_dir,
        threshold=threshold,
        seed=args.seed,
        recipe=args.recipe,
        progress=not args.no_progress,
    )
    print(res.paths["summary_md"].read_text(), end="")
    if res.threshold is not None:
        print(f"\nverification threshold (clean EER): {res.threshold:.4f}")
    print(f"\nrecipe: {res.recipe.name}; {len(data)} items; results in {res.paths['results']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
