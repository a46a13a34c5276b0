"""Align stage timing: detection, landmarks and warp per photo, and scaling with photo size.

Prints one JSON object.  Runs on one CPU core (OpenCV limited to one thread; dlib is
single-threaded).  Photos default to ../shared/photos.

    python benchmarks/align.py [--photos DIR] [--size 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, round(1000 * statistics.median(times), 1)


def measure(rgb, size, repeats):
    from align.detect import detect_boxes, landmarks
    from align.ffhq import ffhq_quad, quad_to_matrix, warp_to_aligned

    boxes, t_detect = _time(lambda: detect_boxes(rgb), repeats)
    row = {"megapixels": round(rgb.shape[0] * rgb.shape[1] / 1e6, 2), "faces": len(boxes), "detect_ms": t_detect}
    if boxes:
        lm, t_lm = _time(lambda: landmarks(rgb, boxes[0][0]), repeats)
        quad = ffhq_quad(lm)
        m = quad_to_matrix(quad, size)
        _, t_warp = _time(lambda: warp_to_aligned(rgb, m, quad, size), repeats)
        row.update(landmarks_ms=t_lm, warp_ms=t_warp, total_ms=round(t_detect + t_lm + t_warp, 1))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "photos")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import cv2

    from align.detect import detect_boxes
    from common.images import load_photo

    cv2.setNumThreads(1)
    photos = sorted(p for p in args.photos.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not photos:
        print(json.dumps({"benchmark": "align", "error": f"no photos in {args.photos}"}))
        return
    t0 = time.perf_counter()
    detect_boxes(load_photo(photos[0]).rgb[:64, :64])  # load the detector once
    t_models = time.perf_counter() - t0
    per_photo = {}
    for p in photos:
        ph = load_photo(p)
        per_photo[p.name] = measure(ph.rgb, args.size, args.repeats)
    # scaling: the largest photo resized to several sizes (12 MP ~ a phone camera)
    big = max(photos, key=lambda p: p.stat().st_size)
    rgb = load_photo(big).rgb
    scaling = []
    for mp in (1, 3, 6, 12, 24):
        f = (mp * 1e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
        scaled = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
        scaling.append(dict(measure(scaled, args.size, args.repeats), source=big.name))
    print(
        json.dumps(
            {
                "benchmark": "align",
                "size": args.size,
                "threads": 1,
                "repeats": args.repeats,
                "detector_load_s": round(t_models, 2),
                "photos": per_photo,
                "scaling": scaling,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
