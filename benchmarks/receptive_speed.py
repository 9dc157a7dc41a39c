"""Seconds per cell for the contact sheet of a layer: batched vs one cell at a time.

    python benchmarks/receptive_speed.py [--iterations 100] [--layer 7x7] [--single 7]
                                         [--batch-size 16] [--threads 1] [--repeats 2]

Explains every cell of ``--layer`` of the embedded EfficientNet-Lite0 (49 cells for the
7×7 head at 224 px) on one bundled image with FAME's L_a = Σ_c |a_c[k]| (paper Fig. 2):

- batched: all cells as one run of ``fame_utils.receptive.run_cells`` in chunks of
  ``--batch-size`` copies of the image (default:
  16 on a CPU, where larger chunks run slower per sample, 64 on a GPU);
- one at a time: ``--single`` cells (default: all) each as its own run, the way a
  per-cell loop would do it; seconds per cell are averaged over those cells.

Both use the same iterations, so the ratio is the speed-up of batching on this device. The
script also compares the two on the shared cells: Δx agrees to float precision for the
first iterations, but L_a = Σ|a| is not smooth where a channel crosses zero, so rounding
differences between batch shapes grow over many iterations; it prints the largest pixel
difference, the cosine similarity of the blurred maps and the mean mass in the CAM box of
both. Use ``--iterations`` to shorten the run on a slow CPU (time scales linearly).
"""

from __future__ import annotations

import argparse
import time

import torch

from fame_utils import FameConfig
from fame_utils.data.objects import load_sample_objects
from fame_utils.models.classifiers import load_classifier
from fame_utils.postprocess import gaussian_blur
from fame_utils.receptive import cell_measures, run_cells
from fame_utils.receptive.cells import all_cells


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--layer", default="7x7", help="key of model.stages")
    ap.add_argument("--image", default="coffee")
    ap.add_argument("--batch-size", type=int, default=None, help="chunk size (default: per device)")
    ap.add_argument("--single", type=int, default=None, help="cells run one at a time (all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=1, help="alternating rounds; fastest kept")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_classifier("efficientnet_lite0", device=args.device)
    device = next(model.parameters()).device
    image = load_sample_objects(
        [args.image], resize=model.resize_size, crop=model.input_size, device=device
    ).images
    layer = model.stages[args.layer]
    batch = args.batch_size or (64 if torch.device(device).type == "cuda" else 16)
    config = FameConfig(iterations=args.iterations, batch_size=batch, progress=False)

    # warm-up: oneDNN / cuDNN pick kernels for each new batch shape on first use
    grid = run_cells(model, image, layer, [(0, 0)], config, iterations=2).grid
    n = grid[0] * grid[1]
    for size in {min(batch, n), n % batch or batch}:
        run_cells(model, image, layer, all_cells(grid)[:size], config, iterations=2)

    cells = all_cells(grid)
    if args.single is not None:
        idx = torch.linspace(0, n - 1, min(args.single, n)).round().long().unique()
    else:
        idx = torch.arange(n)
    cells = cells[idx]

    # alternate the two so that load from other processes hits both alike; keep the fastest
    t_batched = t_single = float("inf")
    for _ in range(args.repeats):
        _sync(device)
        t0 = time.perf_counter()
        batched = run_cells(model, image, layer, None, config)
        _sync(device)
        t_batched = min(t_batched, time.perf_counter() - t0)
        t0 = time.perf_counter()
        singles = [
            run_cells(model, image, layer, [tuple(c)], config).delta[0, 0] for c in cells.tolist()
        ]
        _sync(device)
        t_single = min(t_single, time.perf_counter() - t0)

    single, both = torch.stack(singles), batched.delta[0, idx]
    diff = (single - both).abs().max().item()
    # L_a = Σ|a| is not smooth where a channel crosses 0, so float-level differences between
    # batch shapes (other conv kernels) grow over the iterations: compare maps and measures too
    blur_b = gaussian_blur(both, 49, 7.7).flatten(1)
    blur_s = gaussian_blur(single, 49, 7.7).flatten(1)
    cos = torch.nn.functional.cosine_similarity(blur_b, blur_s).min().item()
    m_b = cell_measures(both, cells, grid)["mass_in_box"].mean().item()
    m_s = cell_measures(single, cells, grid)["mass_in_box"].mean().item()

    per_b, per_s = t_batched / n, t_single / len(singles)
    print(
        f"device: {device} ({torch.get_num_threads()} CPU threads), layer {args.layer} "
        f"{grid[0]}x{grid[1]}, {args.iterations} iterations, chunks of {batch} cells, "
        f"fastest of {args.repeats} alternating rounds"
    )
    print(f"batched      : {n} cells in {t_batched:.1f} s -> {per_b:.3f} s per cell")
    print(f"one at a time: {len(singles)} cells in {t_single:.1f} s -> {per_s:.3f} s per cell")
    print(f"speed-up of batching: {per_s / per_b:.2f}x")
    print(
        f"batched vs one at a time on {len(singles)} cells: max |Δx diff| {diff:.2e} "
        f"(max Δx {single.max().item():.2e}); min cosine of blurred maps {cos:.4f}; "
        f"mean mass in CAM box {m_b:.4f} vs {m_s:.4f}"
    )
    scale = 100 / args.iterations
    print(
        f"at 100 iterations (linear): batched {per_b * scale:.2f} s/cell, "
        f"{per_b * scale * n:.0f} s per {n}-cell sheet; one at a time {per_s * scale:.2f} s/cell"
    )


if __name__ == "__main__":
    main()
