"""Run-to-run spread of the Table 1 / Table 2 columns: how far numerical noise alone moves them.

One call runs one table once on the bundled data at the given thread count and map batch
size, into a fresh folder, and prints that run's summary (methods × columns)::

    python benchmarks/table_spread.py imagenet --threads 1 --batch-size 1 --out runs/s/t1b1
    python benchmarks/table_spread.py imagenet --threads 2 --batch-size 16 --out runs/s/t2b16
    python benchmarks/table_spread.py faces --threads 1 --batch-size 16 --out runs/s/f-t1b16

``--max-items N`` keeps the first N images (pairs); the faces' θ stays the clean EER of the
whole protocol.
``--spread FOLDER [FOLDER ...]`` then prints, for each method × column, the largest minus
the smallest summary mean over those runs (and the largest per-item difference in any
summary column), which is
the spread a reader should treat as numerical noise (issue 9, item 8)::

    python benchmarks/table_spread.py --spread runs/s/t1b1 runs/s/t1b16 runs/s/t2b1 runs/s/t2b16

Everything but ``--threads``/``--batch-size`` stays at the CLI's settings (FAME at
``--iterations``, default 100 here to keep a 2-core CPU run within minutes); each run gets
its own cache so nothing is shared between the runs being compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def _run(
    task: str, threads: int, batch_size: int, iterations: int, max_items: int | None, out: Path
) -> None:
    from fame_utils.__main__ import main

    argv = [
        task,
        "--out",
        str(out),
        "--threads",
        str(threads),
        "--batch-size",
        str(batch_size),
        "--iterations",
        str(iterations),
        "--no-progress",
        "--overwrite",
    ]
    if max_items is not None:
        argv += ["--max-images" if task == "imagenet" else "--max-pairs", str(max_items)]
    status = main(argv)
    if status:
        sys.exit(status)


def _spread(folders: list[Path]) -> pd.DataFrame:
    """Max − min of each summary cell over the runs, and the largest per-item difference
    in any summary column (``max item |Δ|``)."""
    from fame_utils.experiment.result import column_of

    sums, rows = [], []
    for f in folders:
        s = pd.read_csv(f / "summary.csv", index_col="method")
        sums.append(s[[c for c in s.columns if not c.endswith(("_low", "_high"))]])
        r = pd.read_csv(f / "results.csv")
        labels = [column_of(m, t, p).label for m, t, p in zip(r.metric, r.threshold, r.percent)]
        r = r[[label in sums[-1].columns for label in labels]]
        rows.append(r.set_index(["item", "method", "metric", "threshold", "percent"])["value"])
    stacked = pd.concat(sums, keys=range(len(sums)))
    spread = stacked.groupby(level="method", sort=False).agg(lambda v: v.max() - v.min())
    items = pd.concat(rows, axis=1)
    per_item = (items.max(axis=1) - items.min(axis=1)).groupby(level="method").max()
    spread["max item |Δ|"] = per_item
    return spread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", nargs="?", choices=("imagenet", "faces"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--max-items", type=int, default=None, help="first N images / pairs")
    p.add_argument("--out", type=Path)
    p.add_argument("--spread", type=Path, nargs="+", help="compare finished runs")
    args = p.parse_args(argv)
    if args.spread:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(_spread(args.spread).round(4).to_string())
        return 0
    if args.task is None or args.out is None:
        p.error("give a task and --out (or --spread FOLDERS)")
    _run(args.task, args.threads, args.batch_size, args.iterations, args.max_items, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
