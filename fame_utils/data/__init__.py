"""Loaders for the bundled sample data and the paper's datasets.

- :mod:`.transforms` — image loading, Resize + CenterCrop, box mapping and masks.
- :mod:`.objects` — the bundled annotated object images (``data/objects``).
"""

from .objects import (
    ANNOTATION_COLUMNS,
    OBJECTS_DIR,
    ObjectAnnotation,
    ObjectSamples,
    load_sample_objects,
    objects_dir,
    read_annotations,
)
from .transforms import (
    ResizeCropGeometry,
    box_mask,
    load_image,
    map_boxes,
    resize_center_crop,
    resize_crop_geometry,
)

__all__ = [
    "ANNOTATION_COLUMNS",
    "OBJECTS_DIR",
    "ObjectAnnotation",
    "ObjectSamples",
    "load_sample_objects",
    "objects_dir",
    "read_annotations",
    "ResizeCropGeometry",
    "box_mask",
    "load_image",
    "map_boxes",
    "resize_center_crop",
    "resize_crop_geometry",
]
