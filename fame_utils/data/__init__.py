"""Loaders for the bundled sample data and the paper's datasets.

- :mod:`.transforms` — image loading, Resize + CenterCrop, box mapping and masks.
- :mod:`.objects` — the bundled annotated object images (``data/objects``).
- :mod:`.faces` — face-pair protocols (G, P, T CSVs) over folders of aligned chips, and
  the bundled stand-in protocols (``data/faces``).
- :mod:`.imagenet` — ImageNet validation images with first-object boxes (paper protocol).
- :mod:`.digits` — scikit-learn's digits as 32 × 32 RGB images with stroke masks.
- :mod:`.items` — the items, batches and in-memory datasets the experiments run on.
"""
