#!/usr/bin/python3
"""Write a synthetic image at every image path listed in a Med-R1 Splits folder.

  /usr/bin/python3 scripts/make_synthetic_omnimedvqa.py --splits /work/shared/omnimedvqa/Splits --out /tmp/omni
then evaluate with --splits_dir <Splits> --dataset_root /tmp/omni. Lets evaluation run over the
real split files (real names, spaces, parentheses, .jpg/.jpeg/.png) without the 10 GB OmniMedVQA.
The picture style follows the modality: the split file name for modality splits, else keywords of
the source dataset folder ("Images/<dataset>/..."), else a hash of the path. Deterministic;
existing files are kept unless --overwrite.
"""
import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_demo_data import GENERATORS  # noqa: E402

# Keyword (lower case) -> generator key; first hit wins, split name checked before dataset name.
KEYWORDS = [
    ("oct", "oct"), ("optical coherence", "oct"), ("fundus", "fundus"), ("retin", "fundus"),
    ("drimdb", "fundus"), ("glaucoma", "fundus"), ("acrima", "fundus"), ("derm", "dermoscopy"),
    ("skin", "dermoscopy"), ("isic", "dermoscopy"), ("microscop", "microscopy"), ("cell", "microscopy"),
    ("patholog", "microscopy"), ("ct scan", "ct"), ("chest ct", "ct"), ("ultrasound", "us"), ("us ", "us"), ("x-ray", "xray"),
    ("xray", "xray"), ("chest", "xray"), ("mr ", "mri"), ("mri", "mri"), ("magnetic", "mri"),
    ("mag-netic", "mri"), ("brain", "mri"), ("ct", "ct"), ("tomography", "ct"),
]


def style_for(split_name, image):
    parts = image.split("/")
    dataset = parts[1] if len(parts) > 2 and parts[0] == "Images" else ""
    for text in (split_name, dataset):
        t = text.lower() + " "
        for kw, key in KEYWORDS:
            if kw in t:
                return key
    keys = sorted(GENERATORS)
    return keys[int(hashlib.sha1(image.encode()).hexdigest(), 16) % len(keys)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", required=True, help="Med-R1 Splits folder")
    ap.add_argument("--out", required=True, help="dataset root to write Images/... under")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.splits, "**", "*.json"), recursive=True))
    if not files:
        sys.exit(f"{args.splits}: no *.json split files")
    todo = {}
    for f in files:
        rel = os.path.relpath(f, args.splits).split(os.sep)
        split_name = os.path.basename(f) if rel[0] == "modality" else ""
        with open(f, encoding="utf-8") as fh:
            recs = json.load(fh)
        for i, r in enumerate(recs):
            if "image" not in r:
                sys.exit(f"{f}: record {i}: image: missing")
            todo.setdefault(r["image"], style_for(split_name, r["image"]))
    written = 0
    for image, key in sorted(todo.items()):
        path = image if os.path.isabs(image) else os.path.join(args.out, image)
        if os.path.exists(path) and not args.overwrite:
            continue
        seed = int(hashlib.sha1(image.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        size = 64 + seed % 33
        img = GENERATORS[key](rng, size, size)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        ext = os.path.splitext(path)[1].lower()
        if ext in (".jpg", ".jpeg"):
            img.convert("RGB").save(path, format="JPEG", quality=90)
        elif ext in (".bmp", ".tif", ".tiff", ".png", ".gif"):
            img.save(path)
        else:
            img.save(path, format="PNG")  # unknown extension: PNG bytes under the listed name
        written += 1
    print(f"{len(files)} split files, {len(todo)} distinct images, {written} written under {args.out}")


if __name__ == "__main__":
    main()
