#!/usr/bin/env python3
"""Differential check of medr1's Pillow emulation against the Pillow installed here (Debian's python3-pil 9.4.0).

1. BICUBIC resize: random images (noise, gradients, hard edges) and random target sizes (up, down, extreme
   ratios, one axis unchanged, same size) -> medr1-image vs PIL Image.resize(BICUBIC), must be identical.
2. Decode: files PIL writes in many modes (JPEG baseline/progressive/grey/CMYK at random quality and chroma
   subsampling, PNG L/LA/P/P+tRNS/RGBA/RGB/1/I;16, BMP, opaque GIF) -> medr1-image vs Image.open().convert("RGB").

Not part of ctest. Usage: python3 scripts/check_bicubic.py [--bin build/medr1-image] [--n 300] [--seed 0]
Exit status 1 on any mismatch.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import struct
import zlib

import numpy as np
from PIL import Image


def write_png_raw(path, samples, bit_depth, color_type, palette=None):
    """Writes a PNG by hand (PIL cannot write 16-bit colour or 2/4-bit grey). samples: [H, W, C] ints."""
    h, w, c = samples.shape
    rows = []
    for y in range(h):
        flat = samples[y].reshape(-1)
        if bit_depth == 16:
            raw = flat.astype(">u2").tobytes()
        elif bit_depth == 8:
            raw = flat.astype(np.uint8).tobytes()
        else:
            per = 8 // bit_depth
            padded = np.zeros(((len(flat) + per - 1) // per) * per, dtype=np.uint8)
            padded[:len(flat)] = flat
            packed = np.zeros(len(padded) // per, dtype=np.uint8)
            for k in range(per):
                packed |= (padded[k::per] << (8 - bit_depth * (k + 1))).astype(np.uint8)
            raw = packed.tobytes()
        rows.append(b"\x00" + raw)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(palette))
    png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    parts, pos = [], 0
    while len(parts) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        parts.append(data[start:pos])
    pos += 1
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(data[pos:pos + w * h * 3], dtype=np.uint8).reshape(h, w, 3)


def write_bmp16(path, samples, layout):
    """16-bit BMP by hand (PIL cannot write one): layout '555' (BI_RGB) or '565' (BI_BITFIELDS)."""
    h, w = samples.shape
    stride = (w * 2 + 3) & ~3
    rows = b"".join(samples[y].astype("<u2").tobytes().ljust(stride, b"\x00") for y in range(h - 1, -1, -1))
    masks = struct.pack("<III", 0xF800, 0x7E0, 0x1F) if layout == "565" else b""
    offset = 14 + 40 + len(masks)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 16, 3 if layout == "565" else 0, len(rows), 2835, 2835, 0, 0)
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + dib + masks + rows)


def random_image(rng, w, h):
    kind = rng.integers(0, 4)
    if kind == 0:  # noise: exercises the clip8 at both ends
        return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    if kind == 1:  # gradients
        y, x = np.mgrid[0:h, 0:w]
        a = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256], -1)
        return a.astype(np.uint8)
    if kind == 2:  # hard edges: black/white blocks
        b = rng.integers(1, 8)
        y, x = np.mgrid[0:h, 0:w]
        v = (((x // b) + (y // b)) % 2) * 255
        return np.repeat(v[..., None], 3, -1).astype(np.uint8)
    return np.full((h, w, 3), rng.integers(0, 256, size=3), dtype=np.uint8)  # flat


def run_batch(binary, jobs, tmp):
    batch = os.path.join(tmp, "batch.txt")
    with open(batch, "w") as f:
        for src, out, w, h in jobs:
            f.write(f"{src} {out} {w} {h}\n")
    r = subprocess.run([binary, "--batch", batch], capture_output=True, text=True)
    errors = {}
    for line in r.stderr.splitlines():
        if line.startswith("ERROR "):
            path, msg = line[6:].split(": ", 1)
            errors[path] = msg
    return errors


def check_resize(binary, n, rng, tmp):
    jobs, expected = [], []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(1, 320, size=2))
        mode = rng.integers(0, 5)
        if mode == 0:
            ow, oh = (int(v) for v in rng.integers(1, 640, size=2))
        elif mode == 1:  # strong downscale
            ow, oh = max(1, w // int(rng.integers(2, 12))), max(1, h // int(rng.integers(2, 12)))
        elif mode == 2:  # one axis unchanged
            ow, oh = (w, int(rng.integers(1, 400))) if rng.integers(0, 2) else (int(rng.integers(1, 400)), h)
        elif mode == 3:  # same size
            ow, oh = w, h
        else:  # multiples of 28 like smart_resize output
            ow, oh = 28 * int(rng.integers(1, 16)), 28 * int(rng.integers(1, 16))
        arr = random_image(rng, w, h)
        src = os.path.join(tmp, f"r{i}.png")
        Image.fromarray(arr, "RGB").save(src)
        out = os.path.join(tmp, f"r{i}.ppm")
        jobs.append((src, out, ow, oh))
        expected.append(np.asarray(Image.fromarray(arr, "RGB").resize((ow, oh), Image.BICUBIC)))
    errors = run_batch(binary, jobs, tmp)
    bad = 0
    for (src, out, ow, oh), exp in zip(jobs, expected):
        if src in errors:
            print(f"resize {src} -> {ow}x{oh}: medr1 error {errors[src]}")
            bad += 1
            continue
        got = read_ppm(out)
        if got.shape != exp.shape or not np.array_equal(got, exp):
            d = np.abs(got.astype(int) - exp.astype(int)).max() if got.shape == exp.shape else "shape"
            print(f"resize MISMATCH {src} -> {ow}x{oh}: max diff {d}")
            bad += 1
    print(f"resize: {n - bad}/{n} identical to Pillow {Image.__version__}")
    return bad


def check_decode(binary, n, rng, tmp):
    jobs, expected = [], []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(1, 200, size=2))
        arr = random_image(rng, w, h)
        if rng.integers(0, 2):  # smoother content makes JPEG paths more typical
            arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
        rgb = Image.fromarray(arr, "RGB")
        kind = ["jpg", "jpg_prog", "jpg_L", "jpg_cmyk", "png_L", "png_LA", "png_P", "png_Ptrns", "png_RGBA",
                "png_RGB", "png_1", "png_I16", "bmp", "bmp_P", "gif", "raw_RGB16", "raw_RGBA16", "raw_LA16",
                "raw_L2", "raw_L4", "raw_P4short", "gif_trns", "gif_gray", "gif_small_pal", "bmp555", "bmp565"][i % 26]
        path = os.path.join(tmp, f"d{i}_{kind}")
        q = int(rng.integers(5, 100))
        sub = int(rng.integers(0, 3))
        if kind == "jpg":
            rgb.save(path + ".jpg", quality=q, subsampling=sub)
            path += ".jpg"
        elif kind == "jpg_prog":
            try:
                rgb.save(path + ".jpg", quality=q, subsampling=sub, progressive=True)
            except OSError:  # Pillow 9.4's progressive writer buffer (w*h bytes) is too small for noisy q>90 images
                rgb.save(path + ".jpg", quality=min(q, 60), subsampling=sub, progressive=True)
            path += ".jpg"
        elif kind == "jpg_L":
            rgb.convert("L").save(path + ".jpg", quality=q)
            path += ".jpg"
        elif kind == "jpg_cmyk":
            rgb.convert("CMYK").save(path + ".jpg", quality=q)
            path += ".jpg"
        elif kind == "png_L":
            rgb.convert("L").save(path + ".png")
            path += ".png"
        elif kind == "png_LA":
            rgb.convert("LA").save(path + ".png")
            path += ".png"
        elif kind == "png_P":
            rgb.convert("P", palette=Image.ADAPTIVE, colors=int(rng.integers(2, 257))).save(path + ".png")
            path += ".png"
        elif kind == "png_Ptrns":
            p = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
            p.save(path + ".png", transparency=int(rng.integers(0, 16)))
            path += ".png"
        elif kind == "png_RGBA":
            a = rgb.copy()
            a.putalpha(Image.fromarray(rng.integers(0, 256, size=(h, w), dtype=np.uint8), "L"))
            a.save(path + ".png")
            path += ".png"
        elif kind == "png_RGB":
            rgb.save(path + ".png", optimize=bool(rng.integers(0, 2)))
            path += ".png"
        elif kind == "png_1":
            rgb.convert("1").save(path + ".png")
            path += ".png"
        elif kind == "png_I16":
            g = (np.asarray(rgb.convert("L")).astype(np.uint16) * int(rng.integers(0, 300))).astype(np.uint16)
            Image.fromarray(g, "I;16").save(path + ".png")
            path += ".png"
        elif kind == "bmp":
            rgb.save(path + ".bmp")
            path += ".bmp"
        elif kind == "bmp_P":
            rgb.convert("P", palette=Image.ADAPTIVE, colors=200).save(path + ".bmp")
            path += ".bmp"
        elif kind == "gif":
            rgb.convert("P", palette=Image.ADAPTIVE, colors=64).save(path + ".gif")
            path += ".gif"
        elif kind == "gif_trns":
            p = rgb.convert("P", palette=Image.ADAPTIVE, colors=int(rng.integers(2, 257)))
            p.save(path + ".gif", transparency=int(rng.integers(0, 2)), interlace=bool(rng.integers(0, 2)))
            path += ".gif"
        elif kind == "gif_gray":
            rgb.convert("L").save(path + ".gif")
            path += ".gif"
        elif kind == "gif_small_pal":
            rgb.convert("P", palette=Image.ADAPTIVE, colors=3).save(path + ".gif", optimize=False)
            path += ".gif"
        elif kind in ("bmp555", "bmp565"):
            path += ".bmp"
            write_bmp16(path, rng.integers(0, 65536, size=(h, w)), kind[3:])
        else:
            path += ".png"
            if kind in ("raw_RGB16", "raw_RGBA16", "raw_LA16"):
                c, ct = {"raw_RGB16": (3, 2), "raw_RGBA16": (4, 6), "raw_LA16": (2, 4)}[kind]
                write_png_raw(path, rng.integers(0, 65536, size=(h, w, c)), 16, ct)
            elif kind in ("raw_L2", "raw_L4"):
                bits = 2 if kind == "raw_L2" else 4
                write_png_raw(path, rng.integers(0, 1 << bits, size=(h, w, 1)), bits, 0)
            else:  # 4-bit palette with only 5 PLTE entries: indices past it map to Pillow's grey ramp
                write_png_raw(path, rng.integers(0, 16, size=(h, w, 1)), 4, 3,
                              palette=rng.integers(0, 256, size=15).tolist())
        out = path + ".ppm"
        jobs.append((path, out, 0, 0))
        with Image.open(path) as im:
            expected.append((kind, im.mode, np.asarray(im.convert("RGB"))))
    errors = run_batch(binary, jobs, tmp)
    bad = 0
    per_kind = {}
    for (src, out, _, _), (kind, mode, exp) in zip(jobs, expected):
        ok = src not in errors
        if ok:
            got = read_ppm(out)
            ok = got.shape == exp.shape and np.array_equal(got, exp)
            if not ok:
                d = np.abs(got.astype(int) - exp.astype(int)).max() if got.shape == exp.shape else "shape"
                print(f"decode MISMATCH {src} (PIL mode {mode}): max diff {d}")
        else:
            print(f"decode {src}: medr1 error {errors[src]}")
        per_kind.setdefault(kind, [0, 0])
        per_kind[kind][0] += ok
        per_kind[kind][1] += 1
        bad += not ok
    print("decode: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in per_kind.items()))
    return bad


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "..", "build", "medr1-image"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        bad = check_resize(args.bin, args.n, rng, tmp)
        bad += check_decode(args.bin, args.n, rng, tmp)
    print("OK" if bad == 0 else f"{bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
