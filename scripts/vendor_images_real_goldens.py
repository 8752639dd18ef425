#!/usr/bin/env python3
"""Copies the images-real processor goldens of the parity kit into tests/data/images-real/.

The tensors are copied byte for byte from the reference goldens.safetensors (made by transformers v4.49.0 +
Pillow 9.4.0, see /work/shared/parity/README.md); only the duplicate large tensors of the *_maxdefault case
of ihc.png (same resize as img_ihc_png) are left out to keep the fixture lean.
Usage: python3 scripts/vendor_images_real_goldens.py [/work/shared/parity/images-real] [tests/data/images-real]
"""
import json
import os
import shutil
import struct
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/parity/images-real"
DST = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "images-real")
DROP = {"img_ihc_png_maxdefault.resized_uint8", "img_ihc_png_maxdefault.pixel_values_head",
        "img_ihc_png_maxdefault.pixel_values_tail"}


def main():
    os.makedirs(os.path.join(DST, "images"), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(SRC, "images"))):
        shutil.copyfile(os.path.join(SRC, "images", name), os.path.join(DST, "images", name))
    shutil.copyfile(os.path.join(SRC, "goldens.json"), os.path.join(DST, "goldens.json"))
    with open(os.path.join(SRC, "goldens.safetensors"), "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out_header, chunks, offset = {}, [], 0
    meta = header.pop("__metadata__", None)
    if meta is not None:
        out_header["__metadata__"] = meta
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if name in DROP:
            continue
        b, e = info["data_offsets"]
        chunks.append(data[b:e])
        out_header[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [offset, offset + e - b]}
        offset += e - b
    hdr = json.dumps(out_header, separators=(",", ":")).encode()
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    with open(os.path.join(DST, "goldens.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for c in chunks:
            f.write(c)
    print(f"{len(out_header)} entries, {offset} data bytes -> {DST}")


if __name__ == "__main__":
    main()
