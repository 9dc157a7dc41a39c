"""Pretrained networks that install offline, wrapped to take [0, 1] RGB input:
:func:`~fame_utils.models.classifiers.load_classifier` and
:func:`~fame_utils.models.faces.load_face_model` (``docs/models.md``)."""
