"""Builds the Hugging Face `datasets` folders test_data reads (tests/unit/data/hf_dataset_test.cpp).

Usage: make_hf_datasets.py OUT_DIR. With the `datasets` / Pillow of the project venv it writes:
  OUT/images/*.png|jpg   the source image files (small, generated here: PNG RGB, PNG L, PNG RGBA, JPEG)
  OUT/single/            Dataset.save_to_disk of 4 rows: image (Image feature, bytes + path; one path None),
                         problem, solution (one None), question_id int64, modality string, score float64,
                         options list<string>, blob binary (a column medr1 does not load)
  OUT/dict/              DatasetDict {train: 3 rows, test: 2 rows}.save_to_disk
  OUT/sharded/           a 5-row Dataset saved with num_shards=2
  OUT/no_problem/        columns image, solution only
  OUT/int_problem/       problem is int64
  OUT/manifest.json      the rows each folder holds: {folder: [{file, path, problem, solution, extra}]}
"""
import io
import json
import os
import sys

import datasets
from PIL import Image


def make_images(out):
    os.makedirs(out, exist_ok=True)
    specs = {
        "red.png": ("RGB", (5, 3), "PNG"),
        "grey.png": ("L", (4, 6), "PNG"),
        "alpha.png": ("RGBA", (3, 3), "PNG"),
        "photo.jpg": ("RGB", (17, 9), "JPEG"),
    }
    files = {}
    for name, (mode, size, fmt) in specs.items():
        img = Image.new(mode, size)
        px = img.load()
        for y in range(size[1]):
            for x in range(size[0]):
                v = (x * 37 + y * 11) % 256
                px[x, y] = {"RGB": (v, 255 - v, (x * y) % 256), "L": v, "RGBA": (v, 0, 255 - v, 128)}[mode]
        buf = io.BytesIO()
        img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        with open(os.path.join(out, name), "wb") as f:
            f.write(buf.getvalue())
        files[name] = buf.getvalue()
    return files


def main():
    out = sys.argv[1]
    files = make_images(os.path.join(out, "images"))
    names = list(files)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "problem": datasets.Value("string"),
            "solution": datasets.Value("string"),
            "question_id": datasets.Value("int64"),
            "modality": datasets.Value("string"),
            "score": datasets.Value("float64"),
            "options": datasets.Sequence(datasets.Value("string")),
            "blob": datasets.Value("binary"),
        }
    )

    def rows(n, offset):
        out_rows, manifest = [], []
        for i in range(n):
            k = offset + i
            name = names[k % len(names)]
            path = None if k % 4 == 3 else f"Images/Demo/{name}"
            solution = None if k % 4 == 1 else f"<answer> {'ABCD'[k % 4]} </answer>"
            extra = {"question_id": 100 + k, "modality": ["CT", "MRI", "X-Ray"][k % 3], "score": k / 4,
                     "options": ["A", "B"][: 1 + k % 2]}
            out_rows.append({"image": {"bytes": files[name], "path": path}, "problem": f"Q{k} A)CT, B)MRI",
                             "solution": solution, "blob": bytes([k]), **extra})
            # save_to_disk keeps only the base name of an embedded image's path (Image.embed_storage).
            manifest.append({"file": name, "path": None if path is None else os.path.basename(path), "problem": f"Q{k} A)CT, B)MRI", "solution": solution,
                             "extra": extra})
        return out_rows, manifest

    def dataset(n, offset):
        r, m = rows(n, offset)
        return datasets.Dataset.from_list(r, features=features), m

    datasets.disable_progress_bars()
    manifest = {}
    ds, manifest["single"] = dataset(4, 0)
    ds.save_to_disk(os.path.join(out, "single"))
    train, m_train = dataset(3, 0)
    test, m_test = dataset(2, 10)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(os.path.join(out, "dict"))
    manifest["dict/train"], manifest["dict/test"] = m_train, m_test
    ds, manifest["sharded"] = dataset(5, 20)
    ds.save_to_disk(os.path.join(out, "sharded"), num_shards=2)
    img = {"bytes": files["red.png"], "path": "a.png"}
    datasets.Dataset.from_dict({"image": [img], "solution": ["x"]},
                               features=datasets.Features({"image": datasets.Image(), "solution": datasets.Value("string")})
                               ).save_to_disk(os.path.join(out, "no_problem"))
    datasets.Dataset.from_dict({"image": [img], "problem": [7]},
                               features=datasets.Features({"image": datasets.Image(), "problem": datasets.Value("int64")})
                               ).save_to_disk(os.path.join(out, "int_problem"))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
