"""Loaders for the bundled sample data and the paper's datasets.

- :mod:`.transforms` — image loading, Resize + CenterCrop, box mapping and masks.
- :mod:`.objects` — the bundled annotated object images (``data/objects``).
- :mod:`.faces` — face-pair protocols (G, P, T CSVs) over folders of aligned chips, and
  the bundled stand-in protocols (``data/faces``).
- :mod:`.imagenet` — ImageNet validation images with first-object boxes (paper protocol).
- :mod:`.imagenet_files` — finding the ImageNet validation files and reading their boxes,
  synset mapping and image lists.
- :mod:`.items` — the items, batches and in-memory datasets the experiments run on.
"""

from .faces import FACES_DIR, SAMPLE_FACE_SUBSETS, FacePairs, load_face_protocol, load_sample_faces
from .imagenet import ImageNetVal, load_imagenet_val
from .items import (
    ClassificationDataset,
    ClassificationItem,
    PairDataset,
    PairItem,
    dataset_identity,
    from_face_pairs,
    from_object_samples,
)
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
    "ClassificationDataset",
    "ClassificationItem",
    "PairDataset",
    "PairItem",
    "dataset_identity",
    "from_face_pairs",
    "from_object_samples",
    "ImageNetVal",
    "load_imagenet_val",
    "FACES_DIR",
    "SAMPLE_FACE_SUBSETS",
    "FacePairs",
    "load_face_protocol",
    "load_sample_faces",
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
