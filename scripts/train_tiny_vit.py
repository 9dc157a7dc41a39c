"""Train the tiny ViT that ships as ``load_classifier("tiny_vit_digits")``.

Data: scikit-learn's bundled digits as 32 × 32 RGB (:mod:`fame_utils.data.digits`), the fixed
split there (permutation seed 0: 1,400 training, 397 test images). Model: torchvision's
``VisionTransformer`` with ``fame_utils.models.classifiers.TINY_VIT_CONFIG`` (image 32,
patch 4 → an 8 × 8 token grid plus a class token, 4 pre-norm blocks, 4 heads, dim 64, MLP 128,
10 classes), input normalised (x − 0.5)/0.5 inside the wrapper. Training: AdamW (lr 3e-3,
weight decay 0.05), cosine schedule over 30 epochs, batch 64, cross-entropy, no augmentation,
``torch.manual_seed(0)`` for the initialisation and the batch order, one CPU thread.

Writes ``fame_utils/models/weights/tiny_vit_digits.pt`` (the state dict) and
``tiny_vit_digits.json`` beside it (seed, split, hyper-parameters, measured test accuracy,
SHA-256 of the weights file).

Measured (torch 2.14.1, CPU, one thread): test accuracy 0.9874 (392 / 397), train
accuracy 1.0000; 324 s on a shared 2-core machine (the JSON keeps the numbers).
Rebuild: ``python scripts/train_tiny_vit.py`` (add ``--check`` to train and compare with the
committed JSON without overwriting anything).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer
from tqdm import tqdm

from fame_utils.data.digits import SPLIT_SEED, TRAIN_SIZE, load_digits_images
from fame_utils.models.classifiers import (
    TINY_VIT_CONFIG,
    TINY_VIT_MEAN,
    TINY_VIT_STD,
    tiny_vit_digits_path,
)

SEED = 0
EPOCHS = 30
BATCH = 64
LR = 3e-3
WEIGHT_DECAY = 0.05


def _accuracy(net: VisionTransformer, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        logits = net((images - TINY_VIT_MEAN) / TINY_VIT_STD)
    return float((logits.argmax(1) == labels).float().mean())


def train() -> tuple[VisionTransformer, dict]:
    """Train from scratch with the settings of the module docstring; returns (net, record)."""
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    train_set, test_set = load_digits_images("train"), load_digits_images("test")
    net = VisionTransformer(**TINY_VIT_CONFIG)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * ((len(train_set) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    x_all = (train_set.images - TINY_VIT_MEAN) / TINY_VIT_STD
    start = time.perf_counter()
    for _ in tqdm(range(EPOCHS), desc="epochs"):
        net.train()
        for idx in torch.randperm(len(train_set)).split(BATCH):
            loss = F.cross_entropy(net(x_all[idx]), train_set.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    test_accuracy = _accuracy(net, test_set.images, test_set.labels)
    record = {
        "model": "torchvision VisionTransformer",
        "config": TINY_VIT_CONFIG,
        "normalization": {"mean": TINY_VIT_MEAN, "std": TINY_VIT_STD},
        "data": "sklearn.datasets.load_digits, 8x8 -> 32x32 bilinear, gray in RGB",
        "split": {
            "permutation_seed": SPLIT_SEED,
            "train": TRAIN_SIZE,
            "test": len(test_set),
            "rule": "torch.randperm(1797, generator=manual_seed(seed)); first 1400 train",
        },
        "training": {
            "seed": SEED,
            "epochs": EPOCHS,
            "batch": BATCH,
            "optimizer": "AdamW",
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "schedule": "cosine per step",
            "augmentation": None,
            "threads": 1,
        },
        "train_accuracy": round(_accuracy(net, train_set.images, train_set.labels), 4),
        "test_accuracy": round(test_accuracy, 4),
        "test_correct": round(test_accuracy * len(test_set)),
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    return net.eval(), record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="train and print, do not overwrite the files"
    )
    args = parser.parse_args()
    net, record = train()
    path = tiny_vit_digits_path()
    if args.check:
        committed = json.loads(path.with_suffix(".json").read_text())
        print(json.dumps(record, indent=2))
        print("committed test accuracy:", committed["test_accuracy"])
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
