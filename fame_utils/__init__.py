"""fame_utils: FAME (Feature Activation Map Explanation) for image networks.

Zhang & Günther, "FAME: Feature Activation Map Explanation on Image Classification
and Face Recognition", CVPR Workshops (XAI4CV) 2026.
"""

from . import objectives
from .core import FameConfig, FameResult, fame, run_fame

__all__ = ["FameConfig", "FameResult", "fame", "run_fame", "objectives"]
__version__ = "0.1.0"
