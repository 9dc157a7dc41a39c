"""Face-verification explanation speed: seconds per pair of FAME, CorrRISE, FGGB and the
Grad-CAM family on a face network (the embedded dlib ResNet, or FaceNet with ``--model
facenet``), batched (all pairs in one call) and one pair at a time, printed as one table from
one run.

    python benchmarks/face_speed.py [--model facenet] [--pairs 4] [--iterations 100 500]
                                    [--n-masks 500] [--device cuda] [--quick] [--threads N]

``--quick`` shrinks the run to a smoke test (2 pairs, FAME 10 and 50 iterations, 100
CorrRISE masks). Every method explains the probe against the frozen gallery embedding and
returns e₊ (and e₋ where it has one): FAME optimises L₊ and L₋ together (2 samples per pair,
early stop at ε = 0.01 as in the paper, so a run ends when every sample has stopped or the
iteration budget is spent); CorrRISE runs n_masks forward passes per pair; FGGB one forward
and D batched vector-Jacobian products per pair (D = 128 for dlib, 512 for FaceNet).

Columns: ``batched s/pair`` = time of one call on all pairs / pairs; ``single s/pair`` = mean
time of a call on one pair; ``batching speed-up`` = single / batched; ``× Grad-CAM`` = the
method's batched time over Grad-CAM's. These machines are shared and noisy: compare numbers
from the same run only.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import torch
import torch.nn.functional as F

from fame_utils.baselines.cam import GradCAM, GradCAMElementWise
from fame_utils.baselines.corrrise import CorrRISE
from fame_utils.baselines.fggb import FGGB
from fame_utils.core import FameConfig
from fame_utils.methods import CosineSimilarity, Fame
from fame_utils.metrics.face import eer_threshold
from fame_utils.models.faces import load_face_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The bundled chips' framing per network (as notebooks 03/04 use them).
CHIP_PADDING = {"dlib_resnet": 0.25, "facenet": 0.35}


def load_pairs(n: int, model, device: torch.device):
    """Gallery/probe chips of ``n`` genuine pairs taken in turn from the three bundled
    protocols, their frozen gallery embeddings, and the EER threshold θ of all bundled
    clean scores."""
    from fame_utils.data.faces import SAMPLE_FACE_SUBSETS, load_sample_faces

    pad = CHIP_PADDING[model.name]
    protocols = [
        load_sample_faces(s, size=model.input_size, padding=pad) for s in SAMPLE_FACE_SUBSETS
    ]
    with torch.no_grad():
        scores = torch.cat(
            [
                F.cosine_similarity(model(p.gallery.to(device)), model(p.probe.to(device)))
                for p in protocols
            ]
        ).cpu()
    theta = eer_threshold(scores, torch.cat([p.genuine.cpu() for p in protocols]))
    genuine = [p.select(genuine=True) for p in protocols]
    gallery, probe = [], []
    for i in range(n):
        p = genuine[i % len(genuine)]
        j = (i // len(genuine)) % len(p)
        gallery.append(p.gallery[j])
        probe.append(p.probe[j])
    gallery = torch.stack(gallery).to(device)
    probe = torch.stack(probe).to(device)
    with torch.no_grad():
        refs = model(gallery)
    return gallery, probe, refs, theta


def time_call(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=sorted(CHIP_PADDING), default="dlib_resnet")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--iterations", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--n-masks", type=int, default=500)
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="2 pairs, 10/50 iterations, 100 masks")
    args = ap.parse_args(argv)
    if args.quick:
        args.pairs, args.iterations, args.n_masks = 2, [10, 50], 100
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    model = load_face_model(args.model).to(device)
    gallery, probe, refs, theta = load_pairs(args.pairs, model, device)
    n = probe.shape[0]
    dev_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"device: {dev_name}; torch {torch.__version__}; {model.name} at {model.input_size} px, "
        f"D = {refs.shape[1]}; {n} genuine pairs of the bundled protocols; FGGB θ = {theta:.4f}"
    )

    methods = [("Grad-CAM", GradCAM()), ("Grad-CAM-EW", GradCAMElementWise())]
    methods.append((f"CorrRISE ({args.n_masks} masks)", CorrRISE(n_masks=args.n_masks)))
    methods.append(("FGGB", FGGB(threshold=theta)))
    for it in args.iterations:
        cfg = FameConfig(iterations=it, progress=False)
        methods.append((f"FAME ({it} it.)", Fame(cfg)))

    # warm-up: one tiny call of every method (allocator, lazy init, CorrRISE mask cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FAME may warn about empty maps
        for _, m in methods:
            if isinstance(m, Fame):
                Fame(m.config.replace(iterations=1))(model, probe[:1], CosineSimilarity(refs[:1]))
            else:
                m(model, probe[:1], CosineSimilarity(refs[:1]))

        rows = []
        for label, m in methods:
            t_batch = time_call(lambda m=m: m(model, probe, CosineSimilarity(refs)), device)
            t_single = sum(
                time_call(
                    lambda i=i, m=m: m(model, probe[i : i + 1], CosineSimilarity(refs[i : i + 1])),
                    device,
                )
                for i in range(n)
            )
            rows.append((label, t_batch / n, t_single / n))
            print(f"  {label}: done", flush=True)

    base = rows[0][1]
    print()
    print("| method | batched s/pair | single s/pair | batching speed-up | × Grad-CAM (batched) |")
    print("|---|---:|---:|---:|---:|")
    for label, b, s in rows:
        print(f"| {label} | {b:.4f} | {s:.4f} | {s / b:.2f} | {b / base:.1f} |")


if __name__ == "__main__":
    main()
