"""Loaders for the bundled sample data and the paper's datasets (objects, faces, ImageNet
validation, digits), the image and box transforms, and the items the experiments run on."""
