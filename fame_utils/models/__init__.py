"""Pretrained networks that install offline, wrapped to take [0, 1] RGB input:
:func:`~fame_utils.models.classifiers.load_classifier` (EfficientNet-Lite0/1/2, torchvision
ResNets and ViTs, the shipped tiny digits ViT) and :func:`~fame_utils.models.faces.load_face_model`
(dlib's ResNet, FaceNet, AdaFace/ArcFace IResNets). Each returns a ``NormalizedModel``
(``fame_utils.wrap``) in eval mode with ``input_size``, ``target_layer``, ``stages`` and
``input_normalization`` (mean, std) attributes.
"""
