"""FAME speed on the embedded classifier: seconds per image per iteration, and the
overhead of the FAME loop over its floor (one forward + one input-gradient backward).

    python benchmarks/fame_speed.py [--batches 1 8 32] [--iterations 10] [--repeats 3] [--device cuda]

All numbers in the printed table come from this one run (these machines are noisy, so
only ratios measured side by side mean much). Per-iteration FAME time is the slope
(T(2n) − T(n)) / n, which removes the fixed cost of a call (input checks, the final
forward pass that reports the loss).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from fame_utils import FameConfig, run_fame
from fame_utils.models import load_classifier
from fame_utils.objectives import ClassLogit


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_step(model, x: torch.Tensor, targets: torch.Tensor) -> None:
    """One forward + one backward to the input: the least any input-gradient method pays."""
    x = x.detach().requires_grad_(True)
    z = model(x).gather(1, targets[:, None]).sum()
    torch.autograd.grad(z, x)


def time_it(fn, device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(model, b: int, n: int, repeats: int, device: torch.device) -> tuple:
    """(batch, FAME s/image/iter, floor s/image/iter, ratio, whole-call s/image/iter)."""
    g = torch.Generator().manual_seed(b)
    size = model.input_size
    x = torch.rand(b, 3, size, size, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    cfg = FameConfig(progress=False)
    run_fame(model, x, ClassLogit(t), cfg, iterations=2)  # warm-up
    floor_step(model, x, t)

    def floor_n():
        for _ in range(n):
            floor_step(model, x, t)

    t_floor = time_it(floor_n, device, repeats) / n
    t_n = time_it(lambda: run_fame(model, x, ClassLogit(t), cfg, iterations=n), device, repeats)
    t_2n = time_it(
        lambda: run_fame(model, x, ClassLogit(t), cfg, iterations=2 * n), device, repeats
    )
    per_it = (t_2n - t_n) / n
    return b, per_it / b, t_floor / b, per_it / t_floor, t_2n / (2 * n) / b


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--iterations", type=int, default=10, help="n for the slope T(2n) - T(n)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    model = load_classifier("efficientnet_lite0", device=args.device)
    device = next(model.parameters()).device
    size = model.input_size
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (
            f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
    )
    print(f"device: {name}; torch {torch.__version__}; EfficientNet-Lite0 at {size} px")
    n = args.iterations
    rows = [measure(model, b, n, args.repeats, device) for b in args.batches]
    print()
    print(
        "| batch | FAME s/image/iter | floor s/image/iter | overhead (FAME/floor) | "
        "whole call s/image/iter |"
    )
    print("|---:|---:|---:|---:|---:|")
    for b, f, fl, ratio, whole in rows:
        print(f"| {b} | {f:.4f} | {fl:.4f} | {ratio:.3f} | {whole:.4f} |")
    base = rows[0][1]
    print()
    for b, f, *_ in rows[1:]:
        print(f"batch {b}: {base / f:.2f}x the per-image throughput of batch {rows[0][0]}")


if __name__ == "__main__":
    main()
