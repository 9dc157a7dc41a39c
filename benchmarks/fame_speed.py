"""FAME speed per setting (precision, channels_last, compile) against its floor and
against float32 eager, all measured side by side in one run.

    python benchmarks/fame_speed.py [--model efficientnet_lite0|resnet50] [--random-weights]
        [--size PX] [--batches 1 8] [--settings float32 bfloat16 channels_last compile]
        [--iterations 4] [--repeats 3] [--device cuda] [--json] [--live K]

How it measures (the same for FAME and for its floor, so their ratio means something):

- the floor is one forward + one input-gradient backward per iteration, nothing else,
  through the very function FAME uses for its forward (the same autocast, memory format
  and compiled model), with the parameters frozen and the model in eval mode exactly as
  FAME runs it (:func:`fame_utils.core.frozen_eval`);
- both get the same warm-up (a FAME run and a floor run of 2 iterations, which also
  pays any compilation), and both are timed as the slope (T(2n) − T(n)) / n of two run
  lengths, which removes each one's fixed cost (input checks, the final loss pass);
- the four timings of a repeat run back to back, FAME's first in even repeats and the
  floor's first in odd ones (whichever runs second was measured up to 10 % slower or
  faster on this CPU), and the median over repeats is kept;
- on a CPU the clock is the process's CPU time (``time.process_time``), so other
  processes on shared cores do not count; on a GPU it is wall time after a sync.

With ``--live K`` each repeat also times FAME with a live-frame callback every K
iterations (``run_fame(..., callback=, callback_every=K)``; the callback copies Δx and the
loss to the host, as a live display does) and reports its ratio to FAME without one.

Prints a Markdown table, or one JSON object per (batch, setting) with ``--json``.
Per-iteration FAME time should stay ≤ 1.10× the floor.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from fame_utils import FameConfig, run_fame
from fame_utils.core import AUTOCAST_DTYPES, channels_last, frozen_eval
from fame_utils.models.classifiers import load_classifier
from fame_utils.objectives import ClassLogit

SETTINGS = {
    "float32": {},
    "bfloat16": {"precision": "bfloat16"},
    "float16": {"precision": "float16"},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "bfloat16+channels_last": {"precision": "bfloat16", "channels_last": True},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_run(model, x: torch.Tensor, targets: torch.Tensor, cfg: FameConfig, n: int) -> None:
    """n × (forward + input-gradient backward) under ``cfg``'s precision, memory format
    and compile, with the model frozen in eval mode as FAME runs it."""
    device = x.device
    with frozen_eval(model), channels_last(model, cfg.channels_last):
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if cfg.compile else model
        dtype = AUTOCAST_DTYPES.get(cfg.precision)
        objective = ClassLogit(targets)
        for _ in range(n):
            delta = torch.zeros_like(x).requires_grad_(True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = objective(net, x + delta).float()
            torch.autograd.grad(loss.sum(), delta)


def fame_run(model, x: torch.Tensor, targets: torch.Tensor, cfg: FameConfig, n: int) -> None:
    run_fame(model, x, ClassLogit(targets), cfg, iterations=n)


def to_host(delta: torch.Tensor, iteration: int, loss: torch.Tensor) -> None:
    """A live frame's own cost: the Δx and the loss copied to the host."""
    delta.cpu(), loss.cpu()


def live_run(k: int):
    def run(model, x: torch.Tensor, targets: torch.Tensor, cfg: FameConfig, n: int) -> None:
        run_fame(
            model, x, ClassLogit(targets), cfg, iterations=n, callback=to_host, callback_every=k
        )

    return run


def clock(device: torch.device):
    """Wall time on a GPU (after a sync); on a CPU the process's CPU time, which other
    processes sharing the cores do not inflate the way they inflate wall time."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def timed(fn, device: torch.device) -> float:
    now = clock(device)
    _sync(device)
    t0 = now()
    fn()
    _sync(device)
    return now() - t0


def measure(
    model, b: int, setting: str, n: int, repeats: int, device: torch.device, live: int | None
) -> dict:
    """Per-image per-iteration seconds of FAME and of its floor (and of FAME with live
    frames every ``live`` iterations), by the slope method."""
    g = torch.Generator().manual_seed(b)
    size = model.input_size
    x = torch.rand(b, 3, size, size, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    cfg = FameConfig(progress=False, **SETTINGS[setting])
    t_warm = timed(lambda: (fame_run(model, x, t, cfg, 2), floor_run(model, x, t, cfg, 2)), device)
    fame_slopes, floor_slopes, whole, live_slopes = [], [], [], []
    for r in range(repeats):
        pairs = [(fame_run, "fame"), (floor_run, "floor")]
        if live:
            pairs.append((live_run(live), "live"))
        got = {}
        for fn, name in pairs if r % 2 == 0 else pairs[::-1]:  # alternate which goes first
            got[name] = (
                timed(lambda fn=fn: fn(model, x, t, cfg, n), device),
                timed(lambda fn=fn: fn(model, x, t, cfg, 2 * n), device),
            )
        (f1, f2), (l1, l2) = got["fame"], got["floor"]
        fame_slopes.append((f2 - f1) / n)
        floor_slopes.append((l2 - l1) / n)
        whole.append(f2 / (2 * n))
        if live:
            live_slopes.append((got["live"][1] - got["live"][0]) / n)
    fame_it, floor_it = statistics.median(fame_slopes), statistics.median(floor_slopes)
    ratios = [f / fl for f, fl in zip(fame_slopes, floor_slopes)]
    return {
        "batch": b,
        "setting": setting,
        "fame_s_per_image_iter": fame_it / b,
        "floor_s_per_image_iter": floor_it / b,
        "fame_over_floor": fame_it / floor_it,
        # the same ratio per repeat, by which of the two was timed first (order effect)
        "fame_over_floor_fame_first": ratios[0::2],
        "fame_over_floor_floor_first": ratios[1::2],
        "s_per_image_500_iterations": 500 * fame_it / b,
        "whole_call_s_per_image_iter": statistics.median(whole) / b,
        "warmup_s": t_warm,
        # FAME with live frames every `live` iterations over FAME without (median, per repeat)
        "live_every": live,
        "live_over_fame": statistics.median(live_slopes) / fame_it if live else None,
        "live_over_fame_repeats": [a / f for a, f in zip(live_slopes, fame_slopes)],
    }


def profile_both(model, b: int, setting: str, n: int, device: torch.device) -> None:
    """torch.profiler's operator table (self CPU time) of ``n`` FAME and ``n`` floor
    iterations on the batch :func:`measure` used: the same operators should dominate both
    (FAME adds one final forward pass, which the slope removes)."""
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(b)
    size = model.input_size
    x = torch.rand(b, 3, size, size, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    cfg = FameConfig(progress=False, **SETTINGS[setting])
    for name, fn in (("FAME", fame_run), ("floor", floor_run)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn(model, x, t, cfg, n)
        print(f"{name}, batch {b}, {setting}, {n} iterations", file=sys.stderr)
        print(
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10), file=sys.stderr
        )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument(
        "--random-weights",
        action="store_true",
        help="ResNets: torchvision's architecture with random weights (timing only, no download)",
    )
    ap.add_argument("--size", type=int, default=None, help="input side in pixels (model default)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument(
        "--settings",
        nargs="+",
        default=["float32", "bfloat16", "channels_last", "compile"],
        choices=sorted(SETTINGS),
    )
    ap.add_argument("--iterations", type=int, default=4, help="n for the slope T(2n) - T(n)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", action="store_true", help="one JSON line per (batch, setting)")
    ap.add_argument(
        "--live",
        type=int,
        default=None,
        metavar="K",
        help="also time FAME with a live-frame callback every K iterations (e.g. 25)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also print torch.profiler's operator table of --iterations FAME and floor "
        "iterations per (batch, setting)",
    )
    args = ap.parse_args(argv)
    if args.iterations < 1 or args.repeats < 1 or min(args.batches) < 1:
        ap.error("--iterations, --repeats and --batches must be >= 1")

    model = build_model(args.model, args.random_weights, args.device)
    if args.size is not None:
        model.input_size = args.size
    device = next(model.parameters()).device
    header = {
        "device": device_name(device),
        "torch": torch.__version__,
        "model": args.model + (" (random weights)" if args.random_weights else ""),
        "size": model.input_size,
        "iterations_n": args.iterations,
        "repeats": args.repeats,
        "clock": "wall" if device.type == "cuda" else "process CPU time",
    }
    if not args.json:
        print("; ".join(f"{k}: {v}" for k, v in header.items()))
    rows = []
    for setting in args.settings:  # setting-major: a slow compile comes last, after the rest
        for b in args.batches:
            row = measure(model, b, setting, args.iterations, args.repeats, device, args.live)
            if args.profile:
                profile_both(model, b, setting, args.iterations, device)
            rows.append(row)
            if args.json:
                print(json.dumps({**header, **row}), flush=True)
            else:
                print(f"measured batch {b} {setting}", file=sys.stderr, flush=True)
    for row in rows:  # each setting against float32 eager at the same batch
        base = next(
            (r for r in rows if r["batch"] == row["batch"] and r["setting"] == "float32"), None
        )
        row["fame_vs_float32"] = (
            row["fame_s_per_image_iter"] / base["fame_s_per_image_iter"] if base else None
        )
        row["floor_vs_float32"] = (
            row["floor_s_per_image_iter"] / base["floor_s_per_image_iter"] if base else None
        )
    if args.json:
        print(json.dumps({**header, "summary": rows}))
        return
    print()
    print(
        "| batch | setting | FAME s/image/iter | floor s/image/iter | FAME/floor | "
        "FAME vs float32 eager | floor vs float32 eager | warm-up s | live/FAME |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["batch"]):
        vs = "" if r["fame_vs_float32"] is None else f"{r['fame_vs_float32']:.2f}"
        fvs = "" if r["floor_vs_float32"] is None else f"{r['floor_vs_float32']:.2f}"
        print(
            f"| {r['batch']} | {r['setting']} | {r['fame_s_per_image_iter']:.4f} | "
            f"{r['floor_s_per_image_iter']:.4f} | {r['fame_over_floor']:.3f} | {vs} | {fvs} | "
            f"{r['warmup_s']:.1f} | "
            + (
                ""
                if r["live_over_fame"] is None
                else f"{r['live_over_fame']:.3f} (k={r['live_every']})"
            )
            + " |"
        )


def build_model(name: str, random_weights: bool, device: str | None):
    """The classifier to time; ``random_weights`` gives a torchvision ResNet with random
    weights (a freshly initialised state dict passed as the checkpoint: no download)."""
    if not random_weights:
        return load_classifier(name, device=device)
    import torchvision

    state = getattr(torchvision.models, name)(weights=None).state_dict()
    return load_classifier(name, checkpoint=state, weights="IMAGENET1K_V1", device=device)


if __name__ == "__main__":
    main()
