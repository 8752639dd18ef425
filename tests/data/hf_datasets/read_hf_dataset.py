"""Reads a folder with datasets.load_from_disk and dumps what it holds as JSON (hf_dataset_test.cpp).

Usage: read_hf_dataset.py FOLDER OUT.json. Output: {"type": "Dataset"|"DatasetDict", "splits": {name: {
"split": str(ds.split), "features": {col: repr}, "rows": [{col: value..., "image": {"path", "bytes_hex",
"size": [w, h], "mode", "rgb_hex"}}]}}} (a Dataset is the split ""); rgb_hex is PIL's convert("RGB") bytes, other
binary values are written as hex.
"""
import io
import json
import sys

import datasets
from PIL import Image


def dump(ds):
    out = {"split": None if ds.split is None else str(ds.split), "features": {k: repr(v) for k, v in ds.features.items()},
           "num_rows": ds.num_rows, "rows": []}
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for i in range(ds.num_rows):
        row = {k: v.hex() if isinstance(v, bytes) else v for k, v in raw[i].items() if k != "image"}
        row["image"] = raw[i]["image"]
        enc = row.pop("image")
        pil = ds[i]["image"]  # decoded by datasets (a PIL image)
        assert isinstance(pil, Image.Image), type(pil)
        again = Image.open(io.BytesIO(enc["bytes"]))
        assert again.size == pil.size
        row["image"] = {"path": enc["path"], "bytes_hex": enc["bytes"].hex(), "size": list(pil.size),
                        "mode": pil.mode, "rgb_hex": pil.convert("RGB").tobytes().hex()}
        out["rows"].append(row)
    return out


def main():
    obj = datasets.load_from_disk(sys.argv[1])
    if isinstance(obj, datasets.DatasetDict):
        res = {"type": "DatasetDict", "splits": {k: dump(v) for k, v in obj.items()}}
    else:
        res = {"type": "Dataset", "splits": {"": dump(obj)}}
    with open(sys.argv[2], "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
