"""Execute every notebook in notebooks/ headless (papermill) and write their figures.

    python scripts/run_notebooks.py [--figures-dir figures] [--only 01] [-p name value ...]

Each notebook runs with its embedded defaults from the cell tagged ``parameters``
(plus any ``-p`` overrides), with ``notebooks/`` as working directory. Executed copies
(with outputs) go to ``--executed-dir`` (default ``build/notebooks``, git-ignored), so the
committed notebooks stay output-free.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
    return found


def parameter_names(path: Path) -> list[str]:
    """The names assigned in a notebook's cell tagged ``parameters``, in order."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        return []
    source = "".join(tagged[0]["source"])
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def check_parameters(paths: list[Path], given: list[str]) -> None:
    """Refuse a ``-p`` name that is a parameter of none of ``paths`` (a misspelling would
    otherwise run the defaults and exit 0), listing every notebook's parameters."""
    declared = {p.name: parameter_names(p) for p in paths}
    unknown = [n for n in given if not any(n in names for names in declared.values())]
    if unknown:
        listing = "; ".join(f"{k}: {', '.join(v) or '(none)'}" for k, v in declared.items())
        raise SystemExit(
            f"error: -p {', '.join(unknown)}: not a parameter of the notebooks run ({listing})"
        )


def execute(
    path: Path, parameters: dict, executed_dir: Path, cell_timeout: int | None = None
) -> float:
    """Run one notebook with papermill; returns the wall time in seconds.

    ``cell_timeout`` (seconds) fails a cell that runs longer instead of waiting forever
    (a lost kernel message would otherwise hang a headless run)."""
    import papermill as pm

    executed_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(path),
        str(executed_dir / path.name),
        parameters=parameters,
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=cell_timeout,
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--figures-dir", default="figures", help="where the notebooks write figures")
    ap.add_argument("--executed-dir", default="build/notebooks")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 03")
    ap.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="parameter override for every notebook (Python literal)",
    )
    args = ap.parse_args(argv)
    figures = Path(args.figures_dir).resolve()
    figures.mkdir(parents=True, exist_ok=True)
    params = {"figures_dir": str(figures)}
    for name, value in args.p:
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    paths = notebooks(args.only)
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    check_parameters(paths, [name for name, _ in args.p])
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        dt = execute(path, params, Path(args.executed_dir).resolve())
        print(f"  done in {dt:.0f} s", flush=True)
    print(f"figures written to {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
