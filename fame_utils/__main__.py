"""Command line ``python -m fame_utils {imagenet,faces}`` (``docs/cli.md``): runs
:func:`fame_utils.run_experiment` and prints the summary; a mistake exits with status 2."""

from __future__ import annotations

import argparse
import math
import sys
from argparse import ArgumentTypeError  # argparse prints its message as the error line
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .data.faces import SAMPLE_FACE_SUBSETS, load_face_protocol, load_sample_faces
from .data.imagenet import load_imagenet_val
from .data.items import from_face_pairs, from_object_samples
from .data.objects import load_sample_objects
from .experiment.distributed import broadcast, init_from_env
from .experiment.run import run_experiment
from .experiment.store import RunConflictError, check_folder
from .methods import available_methods, make_methods, registry_key, table_methods
from .metrics.adapters import FaceDeleteInsertMetric, table2_metrics
from .metrics.face import cosine_scores, eer_threshold
from .models.classifiers import CLASSIFIERS, load_classifier
from .models.faces import FACE_MODELS, load_face_model
from .recipes import RECIPES, get_recipe

__all__ = ["main", "build_parser"]

SANITY_KEYS = ("constant", "random", "centre")  # reference rows in every summary (issue 23)


def _whole(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < low:
            raise ArgumentTypeError(f"must be at least {low}, got {text}")
        return v

    return parse


def _threshold(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise ArgumentTypeError(f"expected a finite number, got {text!r}")
    if not -1 <= v <= 1:
        raise ArgumentTypeError(f"threshold must lie in [-1, 1], got {text}")
    return v


def _folder(text: str) -> str:
    try:
        return str(check_folder(text, "folder"))
    except ValueError as e:  # argparse names the option
        raise ArgumentTypeError(str(e).replace("folder ", "", 1)) from None


_count = _whole(1)


def _existing(text: str) -> str:
    if not Path(text).expanduser().exists():
        raise ArgumentTypeError(f"{text} does not exist")
    return str(Path(text).expanduser())


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ArgumentTypeError(f"{text!r} is not a device that can run a model; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentTypeError("CUDA is not available here; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ArgumentTypeError(f"{text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return text


def _methods_argument(p: argparse.ArgumentParser, task: str) -> None:
    allowed = available_methods(task)

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise ArgumentTypeError("no methods given")
        for n in names:
            try:
                key = registry_key(n)
            except ValueError:
                key = None
            if key not in allowed:
                raise ArgumentTypeError(
                    f"unknown method {n!r} for {task}; choose from {','.join(allowed)}"
                )
        return names

    p.add_argument(
        "--methods",
        type=parse,
        default=table_methods(task) + list(SANITY_KEYS),
        help=f"comma-separated, from {','.join(allowed)} (default: the table's and the "
        "sanity baselines)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=_folder, required=True, help="output folder")
    p.add_argument("--cache-dir", type=_folder, help="map cache (default OUT/cache)")
    p.add_argument("--checkpoint", type=_existing, help="model weights file")
    p.add_argument("--device", type=_device, help="default: cuda[:LOCAL_RANK] if any, else cpu")
    p.add_argument("--iterations", type=_count, default=500, help="FAME iterations (paper: 500)")
    p.add_argument("--batch-size", type=_count, default=16, help="images per map batch")
    p.add_argument("--eval-batch-size", type=_count, default=64, help="images per metric forward")
    p.add_argument("--seed", type=_whole(0), default=0, help="base seed (>= 0)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="paper", help="paper or code")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--threads", type=_count, help="torch.set_num_threads for the run")
    p.add_argument("--overwrite", action="store_true", help="replace results of other settings")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m fame_utils``."""
    parser = argparse.ArgumentParser(
        prog="python -m fame_utils",
        description="Evaluate FAME and baselines (paper Tables 1 and 2) with caching/resume.",
    )
    sub = parser.add_subparsers(dest="task", required=True)

    im = sub.add_parser("imagenet", help="IoU@t and ROAD-Delete@p (Table 2)")
    _common(im)
    im.add_argument("--model", type=str.lower, choices=CLASSIFIERS, default="efficientnet_lite0")
    im.add_argument("--weights", help="torchvision weights tag, if the checkpoint's name has none")
    _methods_argument(im, "classification")
    im.add_argument("--imagenet-root", type=_existing, help="ImageNet folder (default: bundled)")
    im.add_argument("--annotations", type=_existing, help="LOC_val_solution.csv or XML folder")
    im.add_argument("--synset-mapping", type=_existing, help="LOC_synset_mapping.txt")
    im.add_argument("--image-list", type=_existing, help="the authors' image list CSV, as is")
    im.add_argument("--per-class", type=_count, default=5, help="else: images per class (seeded)")
    im.add_argument("--max-images", type=_count, help="use only the first N images")

    fa = sub.add_parser("faces", help="face Deletion / Insertion (Table 1)")
    _common(fa)
    fa.add_argument("--model", type=str.lower, choices=FACE_MODELS, default="dlib_resnet")
    _methods_argument(fa, "verification")
    fa.add_argument("--subset", choices=SAMPLE_FACE_SUBSETS, default="occlusion")
    fa.add_argument("--protocol", type=_existing, help="pair protocol CSV (G, P, T columns)")
    fa.add_argument("--face-root", type=_existing, help="folder the protocol's paths refer to")
    fa.add_argument("--max-pairs", type=_count, help="use only the first N pairs")
    fa.add_argument("--n-masks", type=_count, default=500, help="CorrRISE masks (paper: 500)")
    fa.add_argument("--threshold", type=_threshold, help="θ in [-1, 1] (default: clean EER's)")
    return parser


def _imagenet(args, device: str) -> tuple:
    model = load_classifier(
        args.model, checkpoint=args.checkpoint, device=device, weights=args.weights
    )
    recipe = get_recipe(args.recipe)
    boxes = recipe.box_convention  # how boxes follow Resize + CenterCrop
    crop = int(getattr(model, "input_size", 224))
    resize = getattr(model, "resize_size", None) or 256
    if args.imagenet_root:
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
            protocol=args.image_list,
        )
    else:
        s = load_sample_objects(resize=resize, crop=crop, convention=boxes)
        if args.max_images is not None:
            s = s[: args.max_images]
        data = from_object_samples(s)
    fame = {"iterations": args.iterations, "progress": False}
    methods = make_methods(args.methods, "classification", recipe=recipe, fame_settings=fame)
    return model, data, methods, table2_metrics(), None, None


def _faces(args, device: str) -> tuple:
    model = load_face_model(args.model, checkpoint=args.checkpoint, device=device)
    size = int(getattr(model, "input_size", 150))
    if args.protocol:
        pairs = load_face_protocol(args.protocol, args.face_root, size=size)
    else:
        pairs = load_sample_faces(args.subset, size=size)
    threshold, source = args.threshold, "given by --threshold"
    if args.max_pairs is not None and args.max_pairs < len(pairs):
        if threshold is None:  # the protocol's clean EER threshold, not the subset's
            clean = cosine_scores(model, pairs.gallery, pairs.probe)
            # rank 0's under torchrun, so every rank keys its cache by the same θ
            threshold = broadcast(float(eer_threshold(clean, pairs.genuine)))
            source = f"clean EER of the whole protocol ({len(pairs)} pairs)"
        pairs = pairs.subset(slice(0, args.max_pairs))
    data = from_face_pairs(pairs)
    methods = make_methods(
        args.methods,
        "verification",
        recipe=args.recipe,
        fame_settings={"iterations": args.iterations, "progress": False},
        threshold=threshold,
        n_masks=args.n_masks,
        seed=args.seed,
    )
    return model, data, methods, [FaceDeleteInsertMetric()], threshold, source


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0; 2 with an ``error:`` line for a mistake).
    Under ``torchrun`` every rank runs this and rank 0 prints the summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.task == "imagenet" and args.image_list and not args.imagenet_root:
        parser.print_usage(sys.stderr)
        why = "--image-list needs --imagenet-root (the folder of its images)"
        parser.exit(2, f"{parser.prog} imagenet: error: {why}\n")
    already = torch.distributed.is_initialized()
    try:
        shard, device = init_from_env(args.device)
        prepare = _imagenet if args.task == "imagenet" else _faces
        model, data, methods, metrics, threshold, source = prepare(args, str(device))
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
            threshold_source=source or "given",
            seed=args.seed,
            recipe=args.recipe,
            progress=not args.no_progress and shard.rank == 0,
            threads=args.threads,
            overwrite=args.overwrite,
        )
    except (OSError, TypeError, ValueError, RunConflictError) as e:
        # argparse's form (usage, then "prog task: error: ..."), returned instead of raised
        parser.print_usage(sys.stderr)
        print(f"{parser.prog} {args.task}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if not already and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if shard.rank == 0:
        print(res.paths["summary_md"].read_text(), end="")
        if res.threshold is not None:
            print(f"\nverification threshold θ ({res.threshold_source}): {res.threshold:.4f}")
        print(f"\nrecipe: {res.recipe.name}; {len(data)} items; results in {res.paths['results']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
