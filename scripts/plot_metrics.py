#!/usr/bin/env python3
"""Plots a medr1-train metrics.jsonl (reward, accuracy/format rewards, completion length, loss) as an SVG
written by hand (no matplotlib needed), and as a PNG when rsvg-convert is available.

usage: scripts/plot_metrics.py runs/demo/metrics.jsonl [-o runs/demo/metrics.svg]
"""
import argparse
import json
import shutil
import subprocess
import sys

PANELS = [  # (title, [(key, colour)])
    ("reward", [("reward", "#1f77b4"), ("rewards/accuracy", "#2ca02c"), ("rewards/format", "#ff7f0e")]),
    ("completion_length", [("completion_length", "#9467bd")]),
    ("loss", [("loss", "#d62728")]),
]
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 420, 260, 52, 12, 28, 34


def smooth(ys, k):
    out = []
    for i in range(len(ys)):
        win = ys[max(0, i - k + 1):i + 1]
        out.append(sum(win) / len(win))
    return out


def panel(x0, title, series, rows):
    parts = [f'<g transform="translate({x0},0)">',
             f'<rect x="0" y="0" width="{W}" height="{H}" fill="white" stroke="#ccc"/>',
             f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14" font-family="sans-serif">{title}</text>']
    pts = {k: [(r["step"], r[k]) for r in rows if k in r and r[k] is not None] for k, _ in series}
    allx = [x for v in pts.values() for x, _ in v]
    ally = [y for v in pts.values() for _, y in v]
    if not allx:
        parts.append("</g>")
        return "".join(parts)
    xmin, xmax = min(allx), max(allx)
    ymin, ymax = min(ally), max(ally)
    if ymax == ymin:
        ymax = ymin + 1.0
    xmax = xmax if xmax > xmin else xmin + 1
    sx = lambda x: PAD_L + (x - xmin) / (xmax - xmin) * (W - PAD_L - PAD_R)
    sy = lambda y: H - PAD_B - (y - ymin) / (ymax - ymin) * (H - PAD_T - PAD_B)
    for i in range(5):  # grid + y labels
        yv = ymin + (ymax - ymin) * i / 4
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{PAD_L - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10" '
                     f'font-family="sans-serif">{yv:.3g}</text>')
    parts.append(f'<text x="{PAD_L}" y="{H - 8}" font-size="10" font-family="sans-serif">step {xmin}</text>')
    parts.append(f'<text x="{W - PAD_R}" y="{H - 8}" text-anchor="end" font-size="10" '
                 f'font-family="sans-serif">step {xmax}</text>')
    ly = PAD_T + 4
    for key, colour in series:
        p = pts[key]
        if not p:
            continue
        k = max(1, len(p) // 15)
        ys = smooth([y for _, y in p], k)
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for (x, _), y in zip(p, ys))
        parts.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{PAD_L + 6}" y="{ly + 10}" font-size="10" fill="{colour}" '
                     f'font-family="sans-serif">{key}{" (moving avg " + str(k) + ")" if k > 1 else ""}</text>')
        ly += 12
    parts.append("</g>")
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("metrics")
    ap.add_argument("-o", "--out", default=None)
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.metrics) if l.strip()]
    if not rows:
        sys.exit(f"{a.metrics}: no records")
    panels = [(t, s) for t, s in PANELS if any(k in r for r in rows for k, _ in s)]
    total_w = W * len(panels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{H}" viewBox="0 0 {total_w} {H}">']
    for i, (t, s) in enumerate(panels):
        svg.append(panel(i * W, t, s, rows))
    svg.append("</svg>\n")
    out = a.out or a.metrics.rsplit(".", 1)[0] + ".svg"
    open(out, "w").write("".join(svg))
    print(out)
    if shutil.which("rsvg-convert"):
        png = out.rsplit(".", 1)[0] + ".png"
        subprocess.run(["rsvg-convert", "-o", png, out], check=True)
        print(png)


if __name__ == "__main__":
    main()
