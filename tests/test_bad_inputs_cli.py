"""Bad inputs to the command line and the experiment runner (issue 9, items 5, 9, 10), as tables.

CLI rows are ``(id, argv, phrase)``: ``python -m fame_utils ARGV`` must exit with status 2
and argparse's ``error:`` line containing the phrase (a regular expression), before any
model is loaded and without a traceback. API rows are ``(id, call, exception type,
phrase)``: the runner must raise that type with that phrase. Rows are only ever added,
so the count of silent acceptances can only go down; a row leaves only with the option it
tests (issue 17 removed ``--iou-thresholds``, ``--road-percents``, ``--road-mode``,
``--resize`` and ``--box-convention``, which no docs page used).

``python tests/test_bad_inputs_cli.py`` prints the clear / unclear / silent counts of both
tables against whichever ``fame_utils`` is on the path (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from fame_utils import Attribution
from fame_utils.__main__ import main
from fame_utils.data.items import ClassificationDataset
from fame_utils.experiment.run import run_experiment
from fame_utils.metrics.adapters import IoUMetric

OUT = ["--out", str(Path(tempfile.gettempdir()) / "fame-bad-inputs-cli")]
MISSING = str(Path(tempfile.gettempdir()) / "fame-no-such-file")

CLI_ROWS: list[tuple[str, list[str], str]] = [
    # item 5: thresholds
    ("threshold-nan", ["faces", "--threshold", "nan"], r"--threshold: expected a finite"),
    ("threshold-5", ["faces", "--threshold", "5"], r"threshold must lie in \[-1, 1\]"),
    ("threshold-text", ["faces", "--threshold", "high"], r"expected a number"),
    ("threshold-inf", ["faces", "--threshold=-inf"], r"finite"),
    # item 9: batch sizes and counts
    ("eval-batch-0", ["imagenet", "--eval-batch-size", "0"], r"--eval-batch-size: must be at"),
    ("batch-0", ["imagenet", "--batch-size", "0"], r"--batch-size: must be at least 1"),
    ("batch-negative", ["faces", "--batch-size", "-3"], r"--batch-size: must be at least 1"),
    ("batch-float", ["imagenet", "--batch-size", "2.5"], r"expected a whole number"),
    ("iterations-0", ["imagenet", "--iterations", "0"], r"--iterations: must be at least 1"),
    ("threads-0", ["imagenet", "--threads", "0"], r"--threads: must be at least 1"),
    ("per-class-0", ["imagenet", "--per-class", "0"], r"--per-class: must be at least 1"),
    ("n-masks-0", ["faces", "--n-masks", "0"], r"--n-masks: must be at least 1"),
    # item 10: --max-images -1 used to drop the last image
    ("max-images-neg", ["imagenet", "--max-images", "-1"], r"--max-images: must be at least 1"),
    ("max-images-0", ["imagenet", "--max-images", "0"], r"--max-images: must be at least 1"),
    ("max-pairs-0", ["faces", "--max-pairs", "0"], r"--max-pairs: must be at least 1"),
    # methods
    ("method-unknown", ["imagenet", "--methods", "fame,gradcamm"], r"unknown method 'gradcamm'"),
    ("method-other-task", ["imagenet", "--methods", "fggb"], r"unknown method 'fggb' for class"),
    ("methods-empty", ["faces", "--methods", ","], r"no methods given"),
    # names and paths
    ("model-unknown", ["imagenet", "--model", "vgg16"], r"invalid choice: 'vgg16'"),
    ("face-model-unknown", ["faces", "--model", "vggface"], r"invalid choice: 'vggface'"),
    ("subset-unknown", ["faces", "--subset", "masks"], r"invalid choice: 'masks'"),
    ("recipe-unknown", ["faces", "--recipe", "mine"], r"invalid choice: 'mine'"),
    ("checkpoint-missing", ["imagenet", "--checkpoint", MISSING], r"does not exist"),
    ("imagenet-root-missing", ["imagenet", "--imagenet-root", MISSING], r"does not exist"),
    ("image-list-missing", ["imagenet", "--image-list", MISSING], r"does not exist"),
    ("image-list-no-root", ["imagenet", "--image-list", __file__], r"needs --imagenet-root"),
    ("annotations-missing", ["imagenet", "--annotations", MISSING], r"does not exist"),
    ("synset-missing", ["imagenet", "--synset-mapping", MISSING], r"does not exist"),
    ("protocol-missing", ["faces", "--protocol", MISSING], r"does not exist"),
    ("face-root-missing", ["faces", "--face-root", MISSING], r"does not exist"),
    ("device-bad", ["imagenet", "--device", "gpu7"], r"not a torch device"),
    ("out-missing", ["imagenet"], r"the following arguments are required: --out"),
    # issue 18: validated before any work
    ("seed-negative", ["imagenet", "--seed", "-1"], r"--seed: must be at least 0"),
    ("seed-text", ["faces", "--seed", "one"], r"--seed: expected a whole number"),
    ("out-empty", ["imagenet", "--out", ""], r"--out: must name a folder"),
    ("out-a-file", ["imagenet", "--out", __file__], r"--out: .*existing file"),
    ("out-under-a-file", ["faces", "--out", __file__ + "/run"], r"--out: .*existing file"),
    ("cache-dir-a-file", ["imagenet", "--cache-dir", __file__], r"--cache-dir: .*existing file"),
    ("device-meta", ["imagenet", "--device", "meta"], r"--device: .*not a device that can run"),
]
if not torch.cuda.is_available():
    CLI_ROWS.append(("device-no-cuda", ["faces", "--device", "cuda"], r"CUDA is not available"))


def _needs_out(argv: list[str]) -> list[str]:
    return argv if argv == ["imagenet"] or "--out" in argv else argv + OUT


@pytest.mark.parametrize("argv, phrase", [r[1:] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS])
def test_cli_mistakes_exit_2_with_an_error_line(argv, phrase, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_needs_out(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    last = err.strip().splitlines()[-1]
    assert re.search(r"^python -m fame_utils \w+: error: ", last), err
    assert re.search(phrase, last), last


def test_cli_error_has_no_traceback():
    """The real command: status 2, argparse's error line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "fame_utils", "imagenet", "--eval-batch-size", "0", *OUT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: argument --eval-batch-size: must be at least 1, got 0" in proc.stderr


class _Tiny(nn.Module):
    def forward(self, x):
        return x.mean((2, 3)) @ torch.ones(3, 4)


def _data():
    g = torch.Generator().manual_seed(0)
    return ClassificationDataset(
        torch.rand(3, 3, 8, 8, generator=g), [0, 1, 2], boxes=[[0, 0, 4, 4]] * 3
    )


def _half(model, images, target):
    return Attribution(torch.full(images[:, 0].shape, 0.5))


_half.name = "half"


def _run(**kw) -> Callable[[], object]:
    def call():
        with tempfile.TemporaryDirectory() as d:
            return run_experiment(_Tiny(), _data(), [_half], [IoUMetric()], d, progress=False, **kw)

    return call


def _run_into(out, metrics=None):
    with tempfile.TemporaryDirectory() as d:
        return run_experiment(
            _Tiny(),
            _data(),
            [_half],
            metrics or [IoUMetric()],
            d if out is None else out,
            progress=False,
        )


API_ROWS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("batch_size=0", _run(batch_size=0), ValueError, r"batch_size must be a whole number >= 1"),
    ("batch_size=-1", _run(batch_size=-1), ValueError, r"batch_size must be"),
    ("batch_size=2.0", _run(batch_size=2.0), TypeError, r"batch_size must be a whole number"),
    ("eval_batch_size=0", _run(eval_batch_size=0), ValueError, r"eval_batch_size must be"),
    ("n_resamples=0", _run(n_resamples=0), ValueError, r"n_resamples must be"),
    ("threads=0", _run(threads=0), ValueError, r"threads must be a whole number >= 1"),
    ("threshold=nan", _run(threshold=float("nan")), ValueError, r"in \[-1, 1\], got nan"),
    ("threshold=5", _run(threshold=5.0), ValueError, r"cosine similarity\) must be .* \[-1, 1\]"),
    ("threshold='a'", _run(threshold="a"), TypeError, r"threshold θ must be a number"),
    ("IoU t=1.5", lambda: IoUMetric((1.5,)), ValueError, r"IoU thresholds must lie in"),
    # issue 18
    ("seed=-1", _run(seed=-1), ValueError, r"seed must be a whole number"),
    ("seed=True", _run(seed=True), TypeError, r"seed must be a whole number"),
    ("out_dir=''", lambda: _run_into(""), ValueError, r"out_dir must name a folder"),
    ("out_dir=file", lambda: _run_into(__file__), ValueError, r"out_dir .*existing file"),
    (
        "IoU duplicate",
        lambda: _run_into(None, [IoUMetric((0.5, 0.5))]),
        ValueError,
        r"more than once",
    ),
]


@pytest.mark.parametrize(
    "call, kind, phrase", [r[1:] for r in API_ROWS], ids=[r[0] for r in API_ROWS]
)
def test_runner_api_refuses_bad_values(call, kind, phrase):
    with pytest.raises(kind, match=phrase):
        call()


def _classify_cli(argv: list[str], phrase: str) -> str:
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            main(_needs_out(argv))
    except SystemExit as e:
        last = (err.getvalue().strip().splitlines() or [""])[-1]
        return "clear" if e.code == 2 and re.search(phrase, last) else "unclear"
    except Exception:
        return "unclear"
    return "silent"


def _classify_api(call, kind, phrase) -> str:
    try:
        call()
    except Exception as e:
        return "clear" if isinstance(e, kind) and re.search(phrase, str(e)) else "unclear"
    return "silent"


if __name__ == "__main__":
    counts = {"clear": 0, "unclear": 0, "silent": 0}
    for name, argv, phrase in CLI_ROWS:
        verdict = _classify_cli(argv, phrase)
        counts[verdict] += 1
        print(f"cli {name}: {verdict}")
    for name, call, kind, phrase in API_ROWS:
        verdict = _classify_api(call, kind, phrase)
        counts[verdict] += 1
        print(f"api {name}: {verdict}")
    print(counts)


def test_a_misspelt_notebook_parameter_is_refused_listing_the_parameters(tmp_path):
    """``scripts/run_notebooks.py -p itrations 1`` used to run the defaults and exit 0."""
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "scripts" / "run_notebooks.py"),
            "--only",
            "01",
            "--figures-dir",
            str(tmp_path),
            "--executed-dir",
            str(tmp_path / "executed"),
            "-p",
            "itrations",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "-p itrations: not a parameter" in proc.stderr
    assert "01_gaussian_blur.ipynb: figures_dir, iterations," in proc.stderr
    assert not (tmp_path / "executed").exists()  # refused before any notebook ran
