"""How far FAME's maps move between reruns at the same settings (issue 9, item 8).

    python benchmarks/rerun_spread.py [--images 16] [--iterations 100] [--threads 1 2]
        [--no-deterministic]

On the bundled objects with EfficientNet-Lite0 (CPU), the same FAME settings are run as

- one batch of all images and one image at a time (batch B vs batch 1),
- at each thread count in ``--threads``,
- and with ``FameConfig(deterministic=True)`` called from the largest thread count,

and every pair that should agree is compared: max |map difference| and the smallest
per-image Pearson r (1.0 means identical), with the time of each run, from
this one run (the deterministic mode's cost is its time against the same batch at the
largest thread count without it; wall and CPU seconds are both given). One run's
numbers; nothing is averaged. On shared cores set OMP_WAIT_POLICY=PASSIVE, or 2 OpenMP
threads spin against other processes and run many times slower.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from fame_utils import FameConfig, fame
from fame_utils.data.objects import load_sample_objects
from fame_utils.models.classifiers import load_classifier
from fame_utils.objectives import ClassLogit
from fame_utils.stats import map_pearson


def run(model, x, t, cfg: FameConfig, threads: int, one_at_a_time: bool) -> tuple:
    """(maps (N, H, W), (wall s, CPU s)) at ``threads`` CPU threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        if one_at_a_time:
            maps = torch.cat(
                [fame(model, x[i : i + 1], ClassLogit(t[i : i + 1]), cfg) for i in range(len(x))]
            )
        else:
            maps = fame(model, x, ClassLogit(t), cfg)
        return maps, (time.perf_counter() - t0, time.process_time() - c0)
    finally:
        torch.set_num_threads(before)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=16, help="how many bundled objects (<= 20)")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-deterministic", action="store_true", help="skip the deterministic runs")
    args = ap.parse_args(argv)

    data = load_sample_objects(device="cpu")
    if not 1 <= args.images <= len(data):
        ap.error(f"--images must lie in [1, {len(data)}]")
    keep = data.labels[: args.images] >= 0
    x, t = data.images[: args.images][keep], data.labels[: args.images][keep]
    model = load_classifier(device="cpu")
    cfg = FameConfig(iterations=args.iterations, progress=False)
    print(
        f"EfficientNet-Lite0, {len(x)} bundled objects, {args.iterations} iterations, "
        f"torch {torch.__version__}, paper defaults otherwise"
    )
    for threads in args.threads:  # warm-up: kernel set-up is not part of any timing
        run(model, x[:1], t[:1], cfg.replace(iterations=1), threads, False)
    maps, secs = {}, {}
    for threads, single in itertools.product(args.threads, (False, True)):
        key = f"{threads} thread{'s' * (threads > 1)}, batch {1 if single else len(x)}"
        maps[key], secs[key] = run(model, x, t, cfg, threads, single)
    top = max(args.threads)
    if not args.no_deterministic:
        det = cfg.replace(deterministic=True)
        for single in (False, True):
            key = f"deterministic from {top} threads, batch {1 if single else len(x)}"
            maps[key], secs[key] = run(model, x, t, det, top, single)

    print()
    print("| run | wall s | CPU s (all threads) |")
    print("|---|---:|---:|")
    for key, (wall, cpu) in secs.items():
        print(f"| {key} | {wall:.1f} | {cpu:.1f} |")
    print()
    print("| map A | map B | max abs diff | min Pearson r | identical |")
    print("|---|---|---:|---:|---|")
    for a, b in itertools.combinations(maps, 2):
        diff = float((maps[a] - maps[b]).abs().max())
        r = float(map_pearson(maps[a], maps[b]).min())
        print(f"| {a} | {b} | {diff:.3g} | {r:.5f} | {'yes' if diff == 0 else 'no'} |")
    if not args.no_deterministic:
        base = f"{top} thread{'s' * (top > 1)}, batch {len(x)}"
        det_key = f"deterministic from {top} threads, batch {len(x)}"
        print()
        print(
            f"deterministic mode at batch {len(x)} against {base}: "
            f"{secs[det_key][0] / secs[base][0]:.2f}x the wall time, "
            f"{secs[det_key][1] / secs[base][1]:.2f}x the CPU time (wall time is what a user waits; "
            "on cores shared with other processes it is noisy)"
        )


if __name__ == "__main__":
    main()
