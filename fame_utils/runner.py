"""Where the README's ``fame_utils.runner.run_experiment`` keeps importing from.

The experiment code lives in :mod:`fame_utils.experiment` (run loop, result, report,
cache), the items and datasets in :mod:`fame_utils.data.items`, the metric adapters in
:mod:`fame_utils.metrics.adapters` and the methods in :mod:`fame_utils.methods`; this
module only re-exports their public names.
"""

from .data.items import (
    ClassificationBatch,
    ClassificationDataset,
    ClassificationItem,
    PairBatch,
    PairDataset,
    PairItem,
    dataset_identity,
    from_face_pairs,
    from_object_samples,
)
from .experiment import (
    CACHE_VERSION,
    ExperimentResult,
    RunConflictError,
    method_key,
    model_fingerprint,
    run_experiment,
    summary_latex,
    summary_markdown,
)
from .methods import available_methods, make_methods
from .metrics.adapters import (
    Column,
    EvalContext,
    FaceDeleteInsertMetric,
    IoUMetric,
    Metric,
    RoadMetric,
)

__all__ = [
    "ClassificationItem",
    "PairItem",
    "ClassificationBatch",
    "PairBatch",
    "ClassificationDataset",
    "PairDataset",
    "Column",
    "Metric",
    "IoUMetric",
    "RoadMetric",
    "FaceDeleteInsertMetric",
    "EvalContext",
    "ExperimentResult",
    "RunConflictError",
    "run_experiment",
    "dataset_identity",
    "from_object_samples",
    "from_face_pairs",
    "method_key",
    "model_fingerprint",
    "summary_markdown",
    "summary_latex",
    "CACHE_VERSION",
    "available_methods",
    "make_methods",
]
