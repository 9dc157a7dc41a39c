"""Speed of the evaluation side: ROAD noisy-linear imputation and the experiment runner.

    python benchmarks/metrics_speed.py [--images 4] [--iterations 5] [--percents 10 30 50]
                                       [--impute-batch 8] [--methods fame gradcam ...]
                                       [--device cuda] [--threads 1] [--skip-runner]

1. Noisy-linear imputation (ROAD, Rong et al. 2022) of the removed top-p % pixels of
   smooth maps (Gaussian-blurred noise, σ 7.7 like FAME's) on the bundled object images
   (224×224): our batched torch solver (:func:`fame_utils.metrics.road.noisy_linear_impute`,
   ``--impute-batch`` images per call, time per image) against pytorch-grad-cam's
   ``NoisyLinearImputer`` (scipy sparse direct solve, one image at a time, CPU), with the
   largest difference between the two (noise off) as a check. One run each.
2. The runner's throughput on the embedded EfficientNet-Lite0: images per second for each
   method, maps only (fresh cache) and maps + evaluation (IoU@0.3/0.5/0.7 and
   ROAD-Delete@10/30/50 zero).

All numbers in the printed tables come from this one run; the machines are shared and
noisy, so compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bench_imputation(images: torch.Tensor, percents, batch: int, device: torch.device) -> list:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from fame_utils.metrics.road import noisy_linear_impute, removal_masks
    from fame_utils.postprocess import gaussian_blur

    g = torch.Generator().manual_seed(0)
    n = images.shape[0]
    maps = gaussian_blur(torch.rand(n, *images.shape[2:], generator=g), 49, 7.7)
    masks = removal_masks(maps, percents)  # (N, P, H, W)
    ref = NoisyLinearImputer(noise=0.0)
    rows = []
    x_dev = images.to(device)
    # warm-up (kernel launch setup, allocator)
    noisy_linear_impute(x_dev[:1], masks[:1, 0].to(device), noise=0.0)
    for j, p in enumerate(percents):
        m = masks[:, j]
        _sync(device)
        t0 = time.perf_counter()
        ours = torch.cat(
            [
                noisy_linear_impute(x_dev[i : i + batch], m[i : i + batch].to(device), noise=0.0)
                for i in range(0, n, batch)
            ]
        ).cpu()
        _sync(device)
        t_ours = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            theirs = torch.stack([ref(images[i].clone(), (~m[i]).float()) for i in range(n)])
        t_ref = (time.perf_counter() - t0) / n
        rows.append(
            {
                "percent": p,
                "removed_px": int(m[0].sum()),
                "ours_s": t_ours,
                "gradcam_s": t_ref,
                "speedup": t_ref / t_ours,
                "max_diff": float((ours - theirs).abs().max()),
            }
        )
    return rows


def bench_runner(model, data, names, iterations: int, batch_size: int, progress: bool) -> list:
    from fame_utils.core import FameConfig
    from fame_utils.experiment.run import run_experiment
    from fame_utils.methods import make_methods
    from fame_utils.metrics.adapters import IoUMetric, RoadMetric

    device = next(model.parameters()).device
    cfg = FameConfig(iterations=iterations, progress=False)
    rows = []
    for name in names:
        (method,) = make_methods([name], "classification", config=cfg)
        with tempfile.TemporaryDirectory() as tmp:
            _sync(device)
            t0 = time.perf_counter()
            run_experiment(model, data, [method], [], tmp, batch_size=batch_size, progress=progress)
            _sync(device)
            t_maps = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_experiment(
                model,
                data,
                [method],
                [IoUMetric(), RoadMetric()],
                tmp,
                batch_size=batch_size,
                progress=progress,
            )
            _sync(device)
            t_eval = time.perf_counter() - t0
        n = len(data)
        rows.append(
            {
                "method": method.name,
                "maps_img_per_s": n / t_maps,
                "eval_img_per_s": n / t_eval,
                "total_img_per_s": n / (t_maps + t_eval),
            }
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=4, help="images for both parts")
    ap.add_argument("--percents", type=float, nargs="+", default=[10, 30, 50])
    ap.add_argument("--impute-batch", type=int, default=8, help="images per imputation call")
    ap.add_argument("--iterations", type=int, default=5, help="FAME iterations in the runner")
    ap.add_argument("--batch-size", type=int, default=4, help="runner batch size")
    ap.add_argument(
        "--methods", nargs="+", default=["fame", "gradcam", "gradcam-ew", "hirescam", "fullgrad"]
    )
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--skip-runner", action="store_true")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from fame_utils.data.items import ClassificationDataset
    from fame_utils.data.objects import load_sample_objects
    from fame_utils.models.classifiers import load_classifier

    model = load_classifier("efficientnet_lite0", device=args.device)
    device = next(model.parameters()).device
    objs = load_sample_objects(resize=model.resize_size or 256, crop=model.input_size)
    objs = objs[: args.images]
    print(f"device: {_device_name(device)}; torch {torch.__version__}; {len(objs)} images\n")

    rows = bench_imputation(objs.images, args.percents, args.impute_batch, device)
    print("Noisy-linear imputation, seconds per 224×224 image (one run):\n")
    print(
        "| removed | pixels | ours (torch CG) | pytorch-grad-cam (scipy) | ratio | max abs diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['percent']:g}% | {r['removed_px']} | {r['ours_s']:.4f} | {r['gradcam_s']:.4f} "
            f"| {r['speedup']:.1f}× | {r['max_diff']:.1e} |"
        )
    if args.skip_runner:
        return
    data = ClassificationDataset(objs.images, objs.labels, objs.boxes, objs.names)
    rows = bench_runner(model, data, args.methods, args.iterations, args.batch_size, args.progress)
    print(
        f"\nRunner on EfficientNet-Lite0, {len(data)} images, batch {args.batch_size}, "
        f"FAME {args.iterations} iterations (images per second):\n"
    )
    print("| method | maps | evaluation (IoU + ROAD-Delete zero) | total |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['maps_img_per_s']:.2f} | {r['eval_img_per_s']:.2f} "
            f"| {r['total_img_per_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
