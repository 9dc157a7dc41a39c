"""fame_utils: FAME (Feature Activation Map Explanation) for image networks.

Zhang & Günther, "FAME: Feature Activation Map Explanation on Image Classification
and Face Recognition", CVPR Workshops (XAI4CV) 2026.

The flat public API, in the spirit of ``captum.attr``::

    import fame_utils as fu

    model = fu.wrap(my_net, mean, std)                # any network -> [0, 1]-RGB model
    maps = fu.fame(model, x, fu.ClassLogit(labels))    # (B, H, W) in [0, 1]
    gradcam = fu.make_methods(["gradcam"], "classification")[0]
    a = gradcam(model, x, fu.ClassLogit(labels))       # Attribution(positive, negative)

FAME's loop (Eq. 3-4) is :func:`run_fame` (:mod:`fame_utils.core`); every task is an
objective (:mod:`fame_utils.objectives`), and the objectives :class:`ClassLogit` and
:class:`CosineSimilarity` are also the targets every method explains
(:mod:`fame_utils.methods`). Figures live in :mod:`fame_utils.plotting`, notebook controls
in :mod:`fame_utils.widgets`, the paper's tables in :mod:`fame_utils.paper`.
"""

from . import receptive
from .core import FameConfig, FameResult, fame, run_fame
from .data.digits import DIGITS_BLUR, load_digits_images
from .data.faces import SAMPLE_FACE_SUBSETS, load_face_protocol, load_sample_faces
from .data.imagenet import load_imagenet_val
from .data.items import from_face_pairs, from_object_samples
from .data.objects import load_sample_objects
from .data.transforms import load_image
from .experiment.result import column_of
from .experiment.run import run_experiment
from .methods import (
    METHODS,
    Fame,
    available_methods,
    empty_maps,
    explain_all,
    make_methods,
    table_methods,
)
from .metrics.adapters import FaceDeleteInsertMetric, IoUMetric, RoadMetric, table2_metrics
from .metrics.face import FACE_PERCENTS, cosine_scores, embed, face_deletion_insertion
from .metrics.localization import box_area_shares, iou_at_thresholds
from .metrics.masks import MaskMetric, mask_share
from .metrics.road import road_scores
from .metrics.threshold import eer, eer_threshold
from .models._wrapper import NormalizedModel, wrap
from .models.classifiers import load_classifier
from .models.faces import load_face_model
from .objectives import (
    Attribution,
    ClassLogit,
    CosineSimilarity,
    Dissimilarity,
    FeatureCell,
    Objective,
    TokenCell,
)
from .recipes import PAPER, REFERENCE, Recipe, get_recipe

__all__ = [
    "Attribution",
    "ClassLogit",
    "CosineSimilarity",
    "DIGITS_BLUR",
    "Dissimilarity",
    "FACE_PERCENTS",
    "Fame",
    "FameConfig",
    "FameResult",
    "FaceDeleteInsertMetric",
    "FeatureCell",
    "IoUMetric",
    "METHODS",
    "MaskMetric",
    "NormalizedModel",
    "Objective",
    "PAPER",
    "REFERENCE",
    "Recipe",
    "RoadMetric",
    "SAMPLE_FACE_SUBSETS",
    "TokenCell",
    "available_methods",
    "box_area_shares",
    "column_of",
    "cosine_scores",
    "eer",
    "eer_threshold",
    "embed",
    "empty_maps",
    "explain_all",
    "face_deletion_insertion",
    "fame",
    "from_face_pairs",
    "from_object_samples",
    "get_recipe",
    "iou_at_thresholds",
    "load_classifier",
    "load_digits_images",
    "load_face_model",
    "load_face_protocol",
    "load_image",
    "load_imagenet_val",
    "load_sample_faces",
    "load_sample_objects",
    "make_methods",
    "mask_share",
    "receptive",
    "road_scores",
    "run_experiment",
    "run_fame",
    "table2_metrics",
    "table_methods",
    "wrap",
]
__version__ = "0.1.0"
