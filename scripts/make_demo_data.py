#!/usr/bin/python3
"""Generate medr1's bundled synthetic "medical" VQA demo set in data/demo/ (Med-R1 format).

Run with Debian's python3 (python3-numpy, python3-pil):  /usr/bin/python3 scripts/make_demo_data.py
Output (deterministic for a given --seed):
  data/demo/Images/<Synthetic dataset>/<name>.png   200 PNGs, 56..112 px per side
  data/demo/train.json, test.json                   Med-R1 records {"image", "problem", "solution"}
  data/demo/train_easy.json, test_easy.json         same images, options always in one fixed order
  data/demo/Splits/{modality,question_type}/{train,test}/<Name>_<stage>.json   Med-R1 Splits layout
Image paths are "Images/<dataset>/..." relative to data/demo/ (pass data/demo as the dataset root).
Each modality has a clear visual signature a tiny model can learn (shape, brightness, colour):
  CT: grey disc with a bright skull ring on black      MRI: bright bluish-grey brain, dark ventricles
  X-Ray: full-frame light image, two dark lungs, ribs  Fundus: orange-red disc, yellow optic disc
  Ultrasound: speckled grey fan (sector) on black
The generators are reused by scripts/make_synthetic_omnimedvqa.py.
"""
import argparse
import json
import os
import random

import numpy as np
from PIL import Image

# (key, option text, Splits modality file name (real Med-R1 names), dataset folder, organ)
MODALITIES = [
    ("ct", "CT", "CT(Computed Tomography)", "Synthetic CT Phantom", "Brain"),
    ("mri", "MRI", "MR (Mag-netic Resonance Imaging)", "Synthetic Brain MRI", "Brain"),
    ("xray", "X-Ray", "X-Ray", "Synthetic Chest X-Ray", "Chest"),
    ("fundus", "Fundus Photography", "Fundus Photography", "Synthetic Fundus", "Eye"),
    ("us", "Ultrasound", "ultrasound", "Synthetic Ultrasound", "Abdomen"),
]
ORGANS = ["Brain", "Chest", "Eye", "Abdomen"]
MODALITY_QUESTIONS = [
    "Which imaging modality is shown in this image?",
    "What imaging technique was used to acquire this image?",
    "What type of imaging is used in this picture?",
]
ANATOMY_QUESTIONS = [
    "Which part of the body is shown in this image?",
    "What anatomical region does this image depict?",
]
LETTERS = "ABCDEFGH"


def _grid(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1  # [-1, 1] coordinates


def _ellipse(x, y, cx, cy, a, b, theta=0.0):
    c, s = np.cos(theta), np.sin(theta)
    xr, yr = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (xr / a) ** 2 + (yr / b) ** 2 <= 1.0


def _to_image(rgb):
    rgb = np.clip(rgb, 0, 1)
    if rgb.ndim == 2:
        return Image.fromarray((rgb * 255 + 0.5).astype(np.uint8), "L")
    return Image.fromarray((rgb * 255 + 0.5).astype(np.uint8), "RGB")


def gen_ct(rng, h, w):
    """Shepp-Logan-like phantom: bright skull ring, grey brain, a few darker/brighter ellipses."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    img = np.zeros((h, w), np.float32)
    a, b = 0.69 + j(0.05), 0.92 + j(0.04)
    img[_ellipse(x, y, 0, 0, a, b)] = 1.0
    img[_ellipse(x, y, 0, -0.02, a - 0.07, b - 0.08)] = 0.35
    img[_ellipse(x, y, 0.22 + j(0.04), 0, 0.11, 0.31, -0.3)] = 0.15
    img[_ellipse(x, y, -0.22 + j(0.04), 0, 0.16, 0.41, 0.3)] = 0.15
    for _ in range(3):
        img[_ellipse(x, y, j(0.3), j(0.5), 0.05 + j(0.02), 0.05 + j(0.02))] = 0.5 + j(0.1)
    return _to_image(img + rng.normal(0, 0.01, img.shape).astype(np.float32))


def gen_mri(rng, h, w):
    """Brain slice: bright bluish-grey tissue, no skull ring, dark ventricles, soft edges."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    r = np.sqrt((x / (0.78 + j(0.05))) ** 2 + (y / (0.9 + j(0.04))) ** 2)
    tissue = np.clip((1.0 - r) * 6, 0, 1) * (0.78 + 0.08 * np.cos(9 * np.arctan2(y, x) + j(3)))
    vent = _ellipse(x, y, -0.12, j(0.05), 0.08, 0.3, 0.2) | _ellipse(x, y, 0.12, j(0.05), 0.08, 0.3, -0.2)
    tissue[vent] = 0.12
    g = tissue + rng.normal(0, 0.01, tissue.shape).astype(np.float32)
    return _to_image(np.stack([g * 0.85, g * 0.92, g], -1))


def gen_xray(rng, h, w):
    """Chest film: light full frame, two dark lung fields, bright spine and curved ribs."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    img = np.full((h, w), 0.72 + j(0.05), np.float32)
    lungs = _ellipse(x, y, -0.42 + j(0.04), 0.0, 0.3, 0.62) | _ellipse(x, y, 0.42 + j(0.04), 0.0, 0.3, 0.62)
    img[lungs] = 0.3
    for k in range(6):  # ribs: bright arcs crossing the lungs
        yy = -0.5 + k * 0.2 + 0.15 * x ** 2 + j(0.02)
        img[lungs & (np.abs(y - yy) < 0.035)] = 0.62
    img[np.abs(x) < 0.07] = 0.92  # spine
    return _to_image(img + rng.normal(0, 0.01, img.shape).astype(np.float32))


def gen_fundus(rng, h, w):
    """Retina photo: orange-red disc on black, yellow optic disc, dark red vessels."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    r = np.sqrt(x ** 2 + y ** 2)
    inside = r < 0.92
    shade = np.clip(1.1 - 0.5 * r, 0, 1)
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[..., 0] = 0.85 * shade
    rgb[..., 1] = 0.35 * shade
    rgb[..., 2] = 0.12 * shade
    ox, oy = 0.35 + j(0.08), j(0.1)
    vessels = np.zeros((h, w), bool)
    for k in range(5):
        ang = k * 2 * np.pi / 5 + j(0.3)
        d = np.abs((x - ox) * np.sin(ang) - (y - oy) * np.cos(ang))
        along = (x - ox) * np.cos(ang) + (y - oy) * np.sin(ang)
        vessels |= (d < 0.025) & (along > 0)
    rgb[vessels] = [0.45, 0.08, 0.05]
    disc = _ellipse(x, y, ox, oy, 0.14, 0.16)
    rgb[disc] = [1.0, 0.9, 0.55]
    rgb[~inside] = 0
    return _to_image(rgb + rng.normal(0, 0.01, rgb.shape).astype(np.float32))


def gen_us(rng, h, w):
    """B-mode fan: a sector from the top centre filled with coarse speckle, black outside."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    ang = np.arctan2(x, y + 1.05)
    rad = np.sqrt(x ** 2 + (y + 1.05) ** 2)
    half = 0.55 + j(0.05)
    fan = (np.abs(ang) < half) & (rad > 0.25) & (rad < 1.95)
    # Coarse speckle (low-res noise upsampled) compresses well and still looks grainy.
    small = rng.rayleigh(0.25, (max(4, h // 4), max(4, w // 4))).astype(np.float32)
    speckle = np.array(Image.fromarray((np.clip(small, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.NEAREST),
                       np.float32) / 255
    img = np.where(fan, 0.25 + 0.6 * speckle * np.clip(1.6 - rad * 0.6, 0, 1), 0).astype(np.float32)
    cyst = _ellipse(x, y, j(0.3), 0.3 + j(0.2), 0.15, 0.1)  # dark anechoic region
    img[fan & cyst] = 0.04
    return _to_image(img)


def gen_oct(rng, h, w):
    """OCT B-scan: horizontal bright retinal layers on a dark speckled background."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    surf = -0.2 + 0.15 * np.cos(2.5 * x + j(1)) + j(0.1)
    img = np.zeros((h, w), np.float32)
    for k, v in enumerate([0.9, 0.5, 0.75, 0.4, 0.95]):
        img[(y > surf + k * 0.09) & (y < surf + k * 0.09 + 0.06)] = v
    img += rng.normal(0.05, 0.04, img.shape).astype(np.float32)
    return _to_image(img)


def gen_dermoscopy(rng, h, w):
    """Skin lesion: skin-coloured frame with a brown irregular blob."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = [0.88, 0.7, 0.6]
    t = np.arctan2(y, x)
    r = np.sqrt(x ** 2 + y ** 2)
    blob = r < 0.5 + 0.08 * np.sin(5 * t + j(3))
    rgb[blob] = [0.42 + j(0.05), 0.26, 0.18]
    return _to_image(rgb)


def gen_microscopy(rng, h, w):
    """Stained tissue: pink background with purple round nuclei."""
    x, y = _grid(h, w)
    j = lambda s: rng.uniform(-s, s)
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = [0.93, 0.72, 0.85]
    for _ in range(12):
        rgb[_ellipse(x, y, j(0.9), j(0.9), 0.09, 0.08, j(3))] = [0.45, 0.25, 0.6]
    return _to_image(rgb)


GENERATORS = {"ct": gen_ct, "mri": gen_mri, "xray": gen_xray, "fundus": gen_fundus, "us": gen_us,
              "oct": gen_oct, "dermoscopy": gen_dermoscopy, "microscopy": gen_microscopy}


def options_problem(question, options, rng):
    """Med-R1 problem text "<question> A)opt, B)opt, ..." and the answer letter of options[0]."""
    order = list(options)
    if rng is not None:
        rng.shuffle(order)
    letter = LETTERS[order.index(options[0])]
    text = question + " " + ", ".join(f"{LETTERS[i]}){o}" for i, o in enumerate(order))
    return text, letter


def record(image, problem, letter):
    return {"image": image, "problem": problem, "solution": f"<answer> {letter} </answer>"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo"))
    ap.add_argument("--per-modality", type=int, default=40)
    ap.add_argument("--test-per-modality", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    rng = random.Random(args.seed)
    nrng = np.random.default_rng(args.seed)
    mod_names = [m[1] for m in MODALITIES]
    data = {"train": [], "test": []}
    easy = {"train": [], "test": []}
    by_mod = {(s, m[2]): [] for s in data for m in MODALITIES}
    by_qt = {(s, q): [] for s in data for q in ("Modality Recognition", "Anatomy Identification")}
    for key, opt, split_name, folder, organ in MODALITIES:
        for i in range(args.per_modality):
            stage = "test" if i >= args.per_modality - args.test_per_modality else "train"
            w = rng.randint(56, 112)
            h = w if key != "xray" else rng.randint(56, 112)
            img = GENERATORS[key](nrng, h, w)
            rel = f"Images/{folder}/{key}_{i:03d}.png"
            path = os.path.join(out, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img.save(path, optimize=True)
            # Modality question: the answer plus three other modalities, shuffled.
            distract = rng.sample([m for m in mod_names if m != opt], 3)
            q1, l1 = options_problem(rng.choice(MODALITY_QUESTIONS), [opt] + distract, rng)
            q2, l2 = options_problem(rng.choice(ANATOMY_QUESTIONS), [organ] + [o for o in ORGANS if o != organ], rng)
            r1, r2 = record(rel, q1, l1), record(rel, q2, l2)
            data[stage] += [r1, r2]
            by_mod[(stage, split_name)] += [r1, r2]
            by_qt[(stage, "Modality Recognition")].append(r1)
            by_qt[(stage, "Anatomy Identification")].append(r2)
            # Easy variant: fixed option order, so the letter is a function of the image alone.
            fixed = MODALITY_QUESTIONS[0] + " " + ", ".join(f"{LETTERS[k]}){m}" for k, m in enumerate(mod_names))
            easy[stage].append(record(rel, fixed, LETTERS[mod_names.index(opt)]))

    def dump(rel, recs):
        p = os.path.join(out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8") as f:
            json.dump(recs, f, indent=1, ensure_ascii=False)
            f.write("\n")

    for stage in data:
        rng.shuffle(data[stage])
        dump(f"{stage}.json", data[stage])
        dump(f"{stage}_easy.json", easy[stage])
    for (stage, name), recs in by_mod.items():
        dump(f"Splits/modality/{stage}/{name}_{stage}.json", recs)
    for (stage, name), recs in by_qt.items():
        dump(f"Splits/question_type/{stage}/{name}_{stage}.json", recs)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"wrote {out}: train {len(data['train'])} / test {len(data['test'])} records, "
          f"{len(MODALITIES) * args.per_modality} images, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
