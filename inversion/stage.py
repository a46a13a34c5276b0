"""The inversion stage on disk: RUN_DIR/align/ -> RUN_DIR/invert/.

Files: pivot.safetensors (w and the projection's noise maps), the tuned generator
(generator.json pointing at the cache entry, or generator.safetensors with --no-cache),
invert.json (model, config, metrics, seconds, cache hit/miss, the aligned image it was made
for, the noise maps the generator was tuned with and the size tuning's LPIPS saw),
reconstruction.png and compare.png (aligned photo | projection | PTI reconstruction).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors import safe_open

from align.identity import identity_report, yaw_ratio
from align.record import AlignRecord
from common.errors import UsageError
from common.fileio import atomic_dir, file_digests, sha256_file
from common.run import RunFolder
from inversion.api import InversionResult, PerceptualFactory, invert
from inversion.cache import InversionCache
from inversion.config import InversionConfig, TuningConfig
from inversion.record import InversionRecord, generator_problem
from weights.checkpoint import load_generator, save_generator
from weights.networks import Generator, to_uint8
from weights.tiny import TINY_NAME

FORMAT_VERSION = 1


def _render(G: Generator, w: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(G.synthesis(w, noise_mode="const", force_fp32=True))[0]


def _with_noise(G: Generator, noise: dict) -> Generator:
    G = copy.deepcopy(G)
    bufs = dict(G.synthesis.named_buffers())
    with torch.no_grad():
        for name, value in noise.items():
            bufs[name].copy_(value)
    return G


def compare_image(panels, labels) -> Image.Image:
    """Panels side by side with a caption strip under each."""
    zoom = max(1, 256 // panels[0].shape[1])  # tiny test models: enlarge so the captions fit
    h, w = panels[0].shape[0] * zoom, panels[0].shape[1] * zoom
    strip = max(16, h // 16)
    canvas = Image.new("RGB", (w * len(panels), h + strip), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (p, label) in enumerate(zip(panels, labels)):
        canvas.paste(Image.fromarray(p).resize((w, h), Image.NEAREST), (i * w, 0))
        draw.text((i * w + 4, h + 2), label, fill="black")
    return canvas


PROFILE_YAW = 0.6  # yaw_ratio below this: a face turned away (see align.identity.yaw_ratio)
LOW_RESOLUTION = 256  # the smallest pretrained FFHQ generator; anything smaller is a test or toy model


def generator_causes(resolution: int, model_name: Optional[str]) -> List[str]:
    """The generator as the cause: random weights, or a resolution no pretrained FFHQ model has."""
    if model_name == TINY_NAME:
        return [f"the generator has random weights ({resolution} px, built by `photodrag doctor`): it makes no face"]
    if resolution < LOW_RESOLUTION:
        return [
            f"the generator is only {resolution} px (a test or random-weight model, not a pretrained FFHQ one): "
            "no step count makes it reproduce a face"
        ]
    return []


def likely_causes(
    face_px: Optional[float],
    out_size: int,
    landmarks: Optional[np.ndarray],
    tuning_steps: Optional[int],
    stopped_early: Optional[bool],
    model_name: Optional[str] = None,
) -> List[str]:
    """Why identity may have drifted, likeliest first: a low-resolution or random generator, a small
    face, a profile view, too few tuning steps."""
    causes = generator_causes(out_size, model_name)
    if face_px is not None and face_px < out_size / 2:
        causes.append(f"the face is small in the photo ({face_px:.0f} px for a {out_size} px model)")
    if landmarks is not None and yaw_ratio(landmarks) < PROFILE_YAW:
        causes.append("the face is turned away from the camera (profile views invert poorly)")
    if tuning_steps is not None and not stopped_early and tuning_steps < TuningConfig.steps:
        causes.append(f"only {tuning_steps} tuning steps ran (try more with --tuning-steps)")
    return causes or ["no obvious cause: try --w-plus or more projection steps"]


def run_invert(
    run_dir: Path,
    generator: Generator,
    model_name: str,
    model_sha256: str,
    config: InversionConfig,
    perceptual: PerceptualFactory,
    cache: Optional[InversionCache],
    store_fp16: bool = False,
    progress: bool = True,
    on_step=None,
) -> InversionResult:
    """Invert RUN_DIR/align/aligned.png and write RUN_DIR/invert/ all at once."""
    run = RunFolder(Path(run_dir))
    align = AlignRecord.load(run.path)
    aligned = run.read_image("align", "aligned.png")
    aligned_sha = run.file_sha256("align", "aligned.png")
    if align.aligned_sha256 not in (None, aligned_sha):
        raise UsageError(f"{run.stage('align')}/aligned.png does not match its align.json; re-run align")
    landmarks = align.aligned_landmarks
    t0 = time.perf_counter()
    res = invert(
        aligned,
        generator,
        config,
        perceptual=perceptual,
        cache=cache,
        model_sha256=model_sha256,
        store_fp16=store_fp16,
        progress=progress,
        face_landmarks=landmarks,
        on_step=on_step,
        labels={"photo": align.photo_path.name, "model": model_name},
    )
    seconds = round(time.perf_counter() - t0, 2)
    projected = _render(_with_noise(generator, res.pivot.noise), res.pivot.w)
    recon = _render(res.generator, res.pivot.w)
    m = res.metrics
    identity = identity_report(aligned, recon)
    warnings = _identity_warnings(identity, align, generator.img_resolution, m, model_name)
    record = _record(aligned_sha, generator, model_name, model_sha256, config, res, seconds, identity, warnings)
    labels = [
        "aligned photo",
        f"projection  LPIPS {m['projection']['lpips']:.3f}",
        f"PTI  LPIPS {m['tuning']['lpips']:.3f}",
    ]
    _write(run, res, record, recon, compare_image([aligned, projected, recon], labels), store_fp16)
    res.identity, res.warnings = identity, warnings
    return res


def _write(run: RunFolder, res, record: dict, recon: np.ndarray, compare: Image.Image, store_fp16: bool) -> None:
    """RUN_DIR/invert/ all at once: pivot, tuned generator (or a pointer to its cache entry), images, record."""
    with atomic_dir(run.stage("invert")) as tmp:
        res.pivot.save(tmp / "pivot.safetensors")
        if res.cache_path is not None:
            (tmp / "generator.json").write_text(
                json.dumps(
                    {"cache_key": res.cache_key, "path": str(res.cache_path / "generator.safetensors")}, indent=2
                )
            )
        else:
            save_generator(res.generator, tmp / "generator.safetensors", fp16=store_fp16)
        Image.fromarray(recon).save(tmp / "reconstruction.png")
        compare.save(tmp / "compare.png")
        generator_file = "generator.json" if res.cache_path is not None else "generator.safetensors"
        record["files"] = file_digests(tmp, ("pivot.safetensors", generator_file, "reconstruction.png", "compare.png"))
        InversionRecord(record).save(tmp)


def _identity_warnings(identity: dict, align: AlignRecord, out_size: int, m: dict, model_name: str) -> List[str]:
    """The warning when the reconstruction may not be the same person, with its likely causes."""
    if identity["distance"] is not None and identity["same_person"]:
        return []
    tuning = m["tuning"]
    causes = likely_causes(
        align.crop_px, out_size, align.landmarks, tuning.get("steps"), tuning.get("stopped_early"), model_name
    )
    what = (
        "no face was found in the reconstruction"
        if identity["distance"] is None
        else f"the reconstruction may not look like the same person (identity distance "
        f"{identity['distance']:.2f} >= {identity['threshold']})"
    )
    return [f"{what}; likely: {'; '.join(causes)}"]


def _record(aligned_sha, generator, model_name, model_sha256, config, res, seconds, identity, warnings) -> dict:
    """invert.json (without its "files", added once they are written)."""
    m = res.metrics
    return {
        "format_version": FORMAT_VERSION,
        "aligned_sha256": aligned_sha,
        "model": {
            "name": model_name,
            "sha256": model_sha256,
            "resolution": generator.img_resolution,
            "init_kwargs": generator.init_kwargs,
        },
        "config": config.to_dict(),
        "profile": config.profile,  # "full" (PTI's schedule) or "preview" (fewer steps)
        "w_plus": config.projection.w_plus,
        "projection": m["projection"],
        "tuning": m["tuning"],
        "metric": m.get("metric"),
        "seconds": dict(m.get("seconds", {}), stage=seconds),
        "cache": {"hit": res.cache_hit, "key": res.cache_key, "entry": str(res.cache_path) if res.cache_path else None},
        "identity": dict(identity, compared="aligned photo vs PTI reconstruction (dlib face recognition)"),
        "warnings": warnings,
    }


def load_inversion(run_dir: Path, device="cpu"):
    """(pivot w [1, num_ws, w_dim], tuned generator, invert.json) of a finished inversion.

    Refuses an inversion made for another aligned image, or whose cached generator is gone.
    """
    run = RunFolder(Path(run_dir))
    record = InversionRecord.load_fresh(run.path)
    try:
        with safe_open(str(run.require("invert", "pivot.safetensors")), "pt", device=str(device)) as fh:
            w = fh.get_tensor("w")
    except Exception as exc:
        raise UsageError(f"{run.stage('invert')}/pivot.safetensors is unreadable ({exc}); re-run invert") from None
    pointer = run.stage("invert") / "generator.json"
    if pointer.is_file():
        problem = generator_problem(run.path)
        again = (
            f"photodrag seed --model {record.model_name} --seed {record.start['seed']} --out {run.path}"
            if record.start
            else f"photodrag invert {run.path}"
        )
        if problem is not None:
            what = "generator" if record.start else "tuned generator"
            raise UsageError(f"the {what} of {run.stage('invert')}: {problem}; re-run `{again}`")
        found = json.loads(pointer.read_text())
        path = Path(found.get("model") or found["path"])
        if "model" in found and sha256_file(path) != found.get("sha256"):
            raise UsageError(f"{path} has changed since {run.path} began from it; re-run `{again}`")
    else:
        path = run.require("invert", "generator.safetensors")
    return w.to(torch.float32), load_generator(path, device), record
