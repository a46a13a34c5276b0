"""Python API of the inversion stage: `invert(aligned, generator, config, cache=...)`."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from common.errors import CheckpointError, UsageError
from common.fileio import atomic_path
from inversion.cache import InversionCache, cache_key
from inversion.config import InversionConfig
from inversion.perceptual import Perceptual
from inversion.projector import project
from inversion.tuning import tune
from weights.checkpoint import load_generator, save_generator
from weights.networks import Generator

PerceptualFactory = Callable[[str, Optional[int]], Perceptual]
# invert.json's tuning.noise_maps, by TuningConfig.keep_projection_noise: the noise the generator was tuned with
TUNED_NOISE = {False: "checkpoint", True: "projection"}


@dataclass(frozen=True)
class Pivot:
    """The projected latent (W+ layout [1, num_ws, w_dim]) and the noise maps it was found with."""

    w: torch.Tensor
    noise: Dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tensors = {"w": self.w.detach().cpu().contiguous()}
        tensors.update({f"noise.{k}": v.detach().cpu().contiguous() for k, v in self.noise.items()})
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "photodrag-pivot", "format_version": "1"})

    @classmethod
    def load(cls, path: Path, device="cpu") -> "Pivot":
        try:
            with safe_open(str(path), "pt", device=str(device)) as fh:
                w = fh.get_tensor("w")
                noise = {k[len("noise.") :]: fh.get_tensor(k) for k in fh.keys() if k.startswith("noise.")}
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable pivot file ({exc})") from None
        return cls(w=w, noise=noise)


@dataclass
class InversionResult:
    pivot: Pivot
    generator: Generator
    metrics: dict
    cache_hit: bool
    cache_key: Optional[str]
    cache_path: Optional[Path]
    identity: Optional[dict] = None  # filled in by the stage (dlib identity distance)
    warnings: list = field(default_factory=list)


def image_to_tensor(aligned: np.ndarray, device) -> torch.Tensor:
    """H x W x 3 uint8 -> [1, 3, H, W] in [-1, 1] (the generator's range)."""
    t = torch.from_numpy(np.array(aligned, dtype=np.float32)).permute(2, 0, 1)[None]
    return (t / 127.5 - 1.0).to(device)


ProgressCallback = Callable[[str, int, int, Dict[str, float]], None]


def _bar(total: int, desc: str, enabled: bool, on_step: Optional[ProgressCallback] = None):
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled, dynamic_ncols=True)

    def callback(step: int, values: Dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)
        if on_step is not None:
            on_step(desc, step + 1, total, values)

    return bar, callback


def _metrics(
    img: torch.Tensor,
    target: torch.Tensor,
    lpips_alex: Perceptual,
    face_box: Optional[tuple] = None,
    face_mask: Optional[torch.Tensor] = None,
) -> dict:
    """LPIPS(alex) and MSE of the whole image, and inside the face region when it is given."""
    with torch.no_grad():
        out = {"lpips": round(float(lpips_alex(img, target)), 5), "mse": round(float(F.mse_loss(img, target)), 6)}
        if face_box is not None:
            x0, y0, x1, y1 = face_box
            crop = lambda t: F.interpolate(t[..., y0:y1, x0:x1], size=(64, 64), mode="bilinear", align_corners=False)
            m = face_mask.to(img.device)
            out["face_region"] = {
                "lpips": round(float(lpips_alex(crop(img), crop(target))), 5),
                "mse": round(float(((img - target).square().mean(1)[0][m]).mean()), 6),
            }
        return out


def _face_region(landmarks: Optional[np.ndarray], size: int):
    """(bounding box, hull mask) of the face landmarks in aligned pixels, or (None, None)."""
    if landmarks is None:
        return None, None
    lm = np.clip(np.rint(landmarks), 0, size - 1).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(lm), 1)
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0) + 1
    return (int(x0), int(y0), int(x1), int(y1)), torch.from_numpy(mask.astype(bool))


def invert(
    aligned: np.ndarray,
    generator: Generator,
    config: InversionConfig = InversionConfig(),
    *,
    perceptual: PerceptualFactory,
    cache: Optional[InversionCache] = None,
    model_sha256: str = "",
    store_fp16: bool = False,
    progress: bool = True,
    face_landmarks: Optional[np.ndarray] = None,
    on_step: Optional[ProgressCallback] = None,
    labels: Optional[dict] = None,
) -> InversionResult:
    """PTI: project `aligned` (size x size x 3 uint8) to a pivot, then tune a copy of `generator`.

    `perceptual(net, resolution)` builds the LPIPS networks (only on a cache miss; resolution None =
    full size).  With a cache, a hit skips projection and tuning entirely.  `generator` is never
    modified; the tuned copy keeps its noise maps unless `config.tuning.keep_projection_noise`.
    `face_landmarks` (68 x 2, aligned pixels) adds LPIPS/MSE inside the face region;
    `on_step(phase, step, total, values)` sees every optimisation step (for progress displays).
    `labels` (e.g. the photo's and the model's names) go into the cache entry's metadata, not its key.
    """
    _check_resolution(aligned, generator)
    device = generator.mapping.w_avg.device
    key = None if cache is None else cache_key(aligned, model_sha256, config.canonical_json() + f"|fp16={store_fp16}")
    hit = None if cache is None else _from_cache(cache, key, device)
    if hit is not None:
        return hit
    target = image_to_tensor(aligned, device)
    t0 = time.perf_counter()
    pcfg, tcfg = config.projection, config.tuning
    lpips_proj = perceptual(pcfg.lpips_net, pcfg.loss_resolution)
    lpips_alex = lpips_proj if pcfg.lpips_net == "alex" else perceptual("alex", pcfg.loss_resolution)
    work = copy.deepcopy(generator)  # projection writes the optimised noise maps into this copy
    bar, cb = _bar(pcfg.steps, "projection", progress, on_step)
    with bar:
        proj = project(work, target, pcfg, lpips_proj, seed=config.seed, callback=cb)
    t1 = time.perf_counter()
    projected_img = _render(work, proj.w)
    # PTI tunes the checkpoint as loaded (its own noise maps); the projection's noise was a throwaway copy's
    start = work if tcfg.keep_projection_noise else generator
    same_net = (tcfg.lpips_net, tcfg.lpips_resolution) == ("alex", pcfg.loss_resolution)
    tuning_lpips = lpips_alex if same_net else perceptual(tcfg.lpips_net, tcfg.lpips_resolution)
    bar, cb = _bar(tcfg.steps, "tuning", progress, on_step)
    with bar:
        tuned = tune(start, proj.w, target, tcfg, tuning_lpips, seed=config.seed, callback=cb)
    t2 = time.perf_counter()
    quality = _quality(target, lpips_alex, _face_region(face_landmarks, generator.img_resolution))
    metrics = {
        "projection": dict(quality(projected_img), steps=proj.steps),
        "tuning": dict(quality(_render(tuned.generator, proj.w)), **_tuning_report(tuned, tcfg, generator)),
        "metric": _metric_text(lpips_alex.input_size(generator.img_resolution)),
        "seconds": {"projection": round(t1 - t0, 2), "tuning": round(t2 - t1, 2), "total": round(t2 - t0, 2)},
    }
    pivot = Pivot(w=proj.w, noise=proj.noise)
    meta = {"metrics": metrics, "model_sha256": model_sha256, "config": config.to_dict(), "fp16": store_fp16}
    meta.update(labels or {})
    cache_path = None if cache is None else _store(cache, key, pivot, tuned.generator, meta)
    return InversionResult(pivot, tuned.generator, metrics, False, key, cache_path)


def _quality(target: torch.Tensor, lpips_alex, region: tuple):
    """image -> its LPIPS(alex)/MSE against `target`, whole and inside the face `region`."""
    return lambda img: _metrics(img, target, lpips_alex, *region)


def _metric_text(px: int) -> str:
    return (
        f"LPIPS(alex) on the images at {px} px and MSE in [-1, 1] units, against the aligned photo "
        "(tuning.stop_lpips: the LPIPS of tuning's loss and stop rule)"
    )


def _check_resolution(aligned: np.ndarray, generator: Generator) -> None:
    if aligned.shape[:2] != (generator.img_resolution,) * 2:
        raise UsageError(
            f"the aligned image is {aligned.shape[1]}x{aligned.shape[0]} but the generator makes "
            f"{generator.img_resolution}x{generator.img_resolution} images; "
            f"re-run align with --size {generator.img_resolution}"
        )


def _from_cache(cache: InversionCache, key: str, device) -> Optional[InversionResult]:
    """The cached pivot and tuned generator for `key`, or None on a miss."""
    entry = cache.get(key)
    if entry is None:
        return None
    pivot = Pivot.load(entry.pivot_path, device)
    tuned = load_generator(entry.generator_path, device)
    return InversionResult(
        pivot, tuned, dict(entry.meta.get("metrics", {}), seconds={"total": 0.0}), True, key, entry.path
    )


def _render(G: Generator, w: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return G.synthesis(w, noise_mode="const", force_fp32=True)


def _tuning_report(tuned, tcfg, generator: Generator) -> dict:
    """invert.json's tuning facts besides the image metrics: steps, the early stop and its LPIPS."""
    return dict(
        steps=tuned.steps,
        stopped_early=tuned.stopped_early,
        threshold=tcfg.lpips_threshold,
        noise_maps=TUNED_NOISE[tcfg.keep_projection_noise],
        stop_lpips={
            "net": tcfg.lpips_net,
            "resolution": tuned.lpips_resolution,
            "downsampled": tuned.lpips_resolution < generator.img_resolution,
            "final": round(tuned.lpips, 5),
        },
    )


def _store(cache: InversionCache, key: str, pivot: Pivot, tuned: Generator, meta: dict) -> Path:
    """Put the pivot and the tuned generator (fp16 when meta["fp16"]) in the cache; the entry's folder."""

    def write(folder: Path) -> None:
        pivot.save(folder / "pivot.safetensors")
        save_generator(tuned, folder / "generator.safetensors", fp16=meta["fp16"])

    return cache.put(key, write, meta).path
