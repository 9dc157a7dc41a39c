"""fame_utils: FAME (Feature Activation Map Explanation; Zhang & Günther, XAI4CV 2026).
Flat API: ``fu.fame(fu.wrap(net, mean, std), x, fu.ClassLogit(labels))`` gives (B, H, W)
maps in [0, 1]; every method is ``method(model, images, target) -> Attribution``."""

from . import receptive as receptive
from .core import FameConfig as FameConfig
from .core import fame as fame
from .core import run_fame as run_fame
from .data.digits import DIGITS_BLUR as DIGITS_BLUR
from .data.digits import load_digits_images as load_digits_images
from .data.faces import SAMPLE_FACE_SUBSETS as SAMPLE_FACE_SUBSETS
from .data.faces import load_face_protocol as load_face_protocol
from .data.faces import load_sample_faces as load_sample_faces
from .data.imagenet import load_imagenet_val as load_imagenet_val
from .data.items import from_face_pairs as from_face_pairs
from .data.items import from_object_samples as from_object_samples
from .data.objects import load_sample_objects as load_sample_objects
from .experiment.result import column_of as column_of
from .experiment.run import run_experiment as run_experiment
from .methods import Fame as Fame
from .methods import available_methods as available_methods
from .methods import empty_maps as empty_maps
from .methods import explain_all as explain_all
from .methods import make_methods as make_methods
from .methods import table_methods as table_methods
from .metrics.adapters import FaceDeleteInsertMetric as FaceDeleteInsertMetric
from .metrics.adapters import IoUMetric as IoUMetric
from .metrics.adapters import RoadMetric as RoadMetric
from .metrics.adapters import table2_metrics as table2_metrics
from .metrics.face import FACE_PERCENTS as FACE_PERCENTS
from .metrics.face import cosine_scores as cosine_scores
from .metrics.face import eer as eer
from .metrics.face import eer_threshold as eer_threshold
from .metrics.face import embed as embed
from .metrics.localization import box_area_shares as box_area_shares
from .metrics.localization import mask_share as mask_share
from .models._wrapper import NormalizedModel as NormalizedModel
from .models._wrapper import wrap as wrap
from .models.classifiers import load_classifier as load_classifier
from .models.faces import load_face_model as load_face_model
from .objectives import Attribution as Attribution
from .objectives import ClassLogit as ClassLogit
from .objectives import CosineSimilarity as CosineSimilarity
from .objectives import Dissimilarity as Dissimilarity
from .objectives import FeatureCell as FeatureCell
from .objectives import Objective as Objective
from .objectives import TokenCell as TokenCell
from .recipes import get_recipe as get_recipe

__version__ = "0.1.0"
