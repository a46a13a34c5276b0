"""Quality by the papers' protocols; prints one JSON object.

1. PTI reconstruction (PTI paper's table): for each photo in a folder, LPIPS(alex), MSE and
   dlib identity distance of the W projection, the W+ projection and PTI.
2. DragGAN face landmark manipulation (paper Table 1): sample two faces from the generator,
   use the 68 landmarks of the first as handles and of the second as targets (1, 5, 68
   points), drag, and report the mean distance of the result's landmarks to the targets
   (before and after) and the time per edit.
3. Edits by name (drag/presets.py): on sampled faces, each preset at --preset-amount, with its
   default mask; the landmarks are detected again on the result and the requested vs achieved
   motion (IOD and pixels, mean over the preset's landmarks) is reported per preset.

It runs on whatever generator is given.  When the weights are not available (the FFHQ
generators and LPIPS backbones cannot be downloaded everywhere) it says so in one line and
exits 0 without numbers: figures are never faked or extrapolated.

    python benchmarks/quality.py [--model ffhq-512|PATH] [--photos DIR] [--pairs 10]
                                 [--projection-steps 450] [--tuning-steps 350] [--drag-steps 300]
                                 [--preset-amount 0.5] [--skip pti drag presets]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ffhq-512")
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "photos")
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--points", type=int, nargs="+", default=[1, 5, 68])
    ap.add_argument("--projection-steps", type=int, default=450)
    ap.add_argument("--tuning-steps", type=int, default=350)
    ap.add_argument("--drag-steps", type=int, default=300)
    ap.add_argument("--preset-amount", type=float, default=0.5)
    ap.add_argument("--skip", choices=["pti", "drag", "presets"], nargs="*", default=[])
    args = ap.parse_args()

    import torch

    from common.errors import PhotodragError
    from common.settings import home_dir
    from weights.store import WeightStore

    store = WeightStore(home_dir(str(args.home) if args.home else None), progress=False)
    try:
        from inversion.perceptual import load_perceptual
        from weights.models import load_model

        G, path = load_model(args.model, store, torch.device("cpu"), fetch=False)
        lp = {n: load_perceptual(n, store, 256, fetch=False) for n in ("alex", "vgg")}
        lp["tuning"] = load_perceptual("alex", store, None, fetch=False)  # PTI's tuning LPIPS: full resolution
    except PhotodragError as exc:
        print(f"quality benchmark not run: {exc}")
        return
    out = {"benchmark": "quality", "model": args.model, "resolution": G.img_resolution}
    if "pti" not in args.skip:
        out["pti"] = pti_table(G, lp, args)
    if "drag" not in args.skip:
        out["landmark_drag"] = landmark_table(G, args)
    if "presets" not in args.skip:
        out["presets"] = preset_table(G, args)
    print(json.dumps(out, indent=2))


def pti_table(G, lp, args) -> dict:

    from align.align import align_face
    from align.identity import identity_report
    from common.errors import UsageError
    from common.images import load_photo
    from inversion.api import image_to_tensor
    from inversion.config import ProjectionConfig, TuningConfig
    from inversion.projector import project
    from inversion.tuning import tune
    from pipeline.quality import summarize
    from weights.networks import to_uint8

    rows = {"W": [], "W+": [], "PTI": []}
    per_photo = {}
    for photo in sorted(args.photos.glob("*.jpg")):
        try:
            aligned = align_face(load_photo(photo).rgb, size=G.img_resolution).aligned
        except UsageError:
            continue
        target = image_to_tensor(aligned, "cpu")
        entry = {}
        for label, w_plus in (("W", False), ("W+", True)):
            Gw = copy.deepcopy(G)
            proj = project(Gw, target, ProjectionConfig(steps=args.projection_steps, w_plus=w_plus), lp["vgg"])
            img = Gw.synthesis(proj.w).detach()
            entry[label] = _scores(img, target, aligned, lp["alex"], identity_report, to_uint8)
            if not w_plus:
                # as PTI: the checkpoint's own noise maps (the projection's stay in Gw), full-resolution LPIPS
                tuned = tune(G, proj.w, target, TuningConfig(steps=args.tuning_steps), lp["tuning"])
                img = tuned.generator.synthesis(proj.w).detach()
                entry["PTI"] = _scores(img, target, aligned, lp["alex"], identity_report, to_uint8)
        per_photo[photo.name] = entry
        for k in rows:
            rows[k].append(entry[k])
    table = {k: {m: summarize([r[m] for r in v]) for m in ("lpips", "mse", "identity")} for k, v in rows.items()}
    return {"protocol": "PTI paper reconstruction table (W, W+, PTI)", "photos": per_photo, "summary": table}


def _scores(img, target, aligned, lpips_alex, identity_report, to_uint8) -> dict:
    import torch.nn.functional as F

    ident = identity_report(aligned, to_uint8(img)[0])
    return {
        "lpips": round(float(lpips_alex(img, target)), 4),
        "mse": round(float(F.mse_loss(img, target)), 5),
        "identity": ident["distance"],
    }


def landmark_table(G, args) -> dict:
    import numpy as np
    import torch

    from align.identity import describe
    from common.errors import UsageError
    from drag.engine import DragConfig, DragEngine
    from pipeline.quality import landmark_pairs, mean_distance, summarize
    from weights.networks import to_uint8, z_from_seed

    def sample(seed):
        with torch.no_grad():
            w = G.mapping(z_from_seed(seed, G.z_dim), truncation_psi=0.7)
            return w, to_uint8(G.synthesis(w))[0]

    results = {n: {"before": [], "after": [], "seconds": []} for n in args.points}
    seed, done = 0, 0
    while done < args.pairs and seed < args.pairs * 5:
        (w1, img1), (_, img2) = sample(seed), sample(seed + 100000)
        seed += 1
        try:
            lm1, lm2 = describe(img1).landmarks, describe(img2).landmarks
        except UsageError:
            continue  # no face detected in a sample: skip the pair, as the protocol needs landmarks
        done += 1
        for n in args.points:
            pairs = landmark_pairs(lm1, lm2, n, seed)
            t0 = time.perf_counter()
            engine = DragEngine(G, w1, pairs[:, 0], pairs[:, 1], config=DragConfig(steps=args.drag_steps))
            state = engine.run()
            secs = time.perf_counter() - t0
            try:
                lm_after = describe(engine.render(state)).landmarks
            except UsageError:
                continue
            idx = np.array([np.argmin(np.linalg.norm(lm2 - t, axis=1)) for t in pairs[:, 1]])
            results[n]["before"].append(mean_distance(pairs[:, 0], pairs[:, 1]))
            results[n]["after"].append(mean_distance(lm_after[idx], pairs[:, 1]))
            results[n]["seconds"].append(secs)
    return {
        "protocol": "DragGAN Table 1: face landmark manipulation",
        "pairs": done,
        "points": {str(n): {k: summarize(v) for k, v in r.items()} for n, r in results.items()},
        "paper": {"1": "12.93 -> 2.44", "5": "11.66 -> 3.18", "68": "16.02 -> 4.73"},
    }


def preset_table(G, args) -> dict:
    """Requested vs achieved motion per preset on sampled faces (the landmarks detected again)."""
    import numpy as np
    import torch

    from align.identity import describe
    from common.errors import UsageError
    from drag.engine import DragConfig, DragEngine
    from drag.presets import PRESETS, add_preset_drags, measure_presets, preset_mask
    from pipeline.quality import summarize
    from weights.networks import to_uint8, z_from_seed

    rows = {name: {"requested_iod": [], "achieved_iod": [], "requested_px": [], "achieved_px": []} for name in PRESETS}
    missed = {name: 0 for name in PRESETS}
    seed, faces = 0, 0
    while faces < args.pairs and seed < args.pairs * 5:
        with torch.no_grad():
            w = G.mapping(z_from_seed(seed, G.z_dim), truncation_psi=0.7)
            img = to_uint8(G.synthesis(w))[0]
        seed += 1
        try:
            lm = describe(img).landmarks
        except UsageError:
            continue  # no face in the sample: presets need landmarks
        faces += 1
        for name in PRESETS:
            amounts = {name: args.preset_amount}
            try:
                pts, _ = add_preset_drags(np.zeros((0, 2, 2)), None, lm, amounts, G.img_resolution)
                engine = DragEngine(
                    G,
                    w,
                    pts[:, 0],
                    pts[:, 1],
                    mask=preset_mask(lm, [name], G.img_resolution),
                    config=DragConfig(steps=args.drag_steps),
                )
                after = describe(engine.render(engine.run())).landmarks
            except UsageError:
                missed[name] += 1
                continue
            (m,) = measure_presets(lm, after, amounts)
            for key in rows[name]:
                rows[name][key].append(getattr(m, key))
    return {
        "protocol": f"each preset at amount {args.preset_amount} on sampled faces, default mask, "
        "landmarks detected again on the result",
        "faces": faces,
        "presets": {n: dict({k: summarize(v) for k, v in r.items()}, not_measured=missed[n]) for n, r in rows.items()},
    }


if __name__ == "__main__":
    main()
