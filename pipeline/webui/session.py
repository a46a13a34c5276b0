"""Interactive editing sessions, independent of HTTP: one photo, one run folder, one job at a time.

A session goes: uploaded -> (face chosen) inverting -> ready <-> dragging.  Jobs run in a
background thread; the page polls `status()` and `frame()` (a JPEG of the photo with the
current edits composited in).  Each drag continues from the current result; undo and reset
step back.  A session whose page stops polling is stopped by the manager's reaper.

Every face of the upload is its own run (run/faces/N, as `edit --face all` lays it out) with its
own drag rounds; choosing another face keeps the edits of the faces before it.  Frames and the
download put every edited face back in one pass (pipeline.group.composite_faces), and the recipe
of several edited faces is the "faces" recipe `edit --recipe` replays to the same bytes.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import secrets
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import cv2
import numpy as np
import torch
from PIL import Image

from align.detect import find_faces
from align.record import AlignRecord
from align.stage import run_align
from common.errors import DiskFullError, PhotodragError, UsageError
from common.fileio import is_disk_full
from common.geometry import apply_matrix
from common.images import load_photo
from common.run import RunFolder
from drag.config import DRAG_OPTIONS, DragConfig
from drag.points import DragPair, map_to_aligned
from drag.record import DragRecord
from drag.stage import run_drag
from inversion.stage import load_inversion, run_invert
from pipeline.composite import DEFAULT_BLEND, display_matrix, save_like
from pipeline.group import FaceImages, composite_faces
from pipeline.models import OpenModels, open_models
from pipeline.outputs import edited_name
from pipeline.recipe import FaceEdit
from weights.models import GENERATOR_NAMES
from weights.networks import to_uint8

MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000
MAX_DRAG_STEPS = 1000
DISPLAY_MAX_SIDE = 1024
FRAME_EVERY_S = 0.4


@dataclass
class FaceState:
    """One face of the session: its run folder, inversion, drag rounds and, when it is not the face
    being edited, the picture of its current latent (its generator is loaded only while it is)."""

    index: int
    run_dir: Path
    w_pivot: torch.Tensor
    align: Optional[AlignRecord] = None
    reconstruction: Optional[np.ndarray] = None  # invert/reconstruction.png, what every edit started from
    history: List[torch.Tensor] = field(default_factory=list)  # latents after each drag round
    rounds: List[dict] = field(default_factory=list)  # the drags (photo px), options and mask of each round
    round_points: List[list] = field(default_factory=list)  # handles, targets, final positions (aligned px)
    edited: Optional[np.ndarray] = None  # the picture of the current latent, kept while another face is edited

    def current_w(self) -> torch.Tensor:
        return self.history[-1] if self.history else self.w_pivot

    def points(self) -> list:
        return [q for r in self.round_points for q in r]


@dataclass
class Progress:
    phase: str = ""
    step: int = 0
    total: int = 0


class Session:
    """A photo's session; pipeline/webui/seed_session.py's SeedSession starts from a seed instead."""

    def __init__(self, sid: str, folder: Path, photo_path: Path, services: "Services") -> None:
        self.photo = load_photo(photo_path, max_pixels=MAX_UPLOAD_PIXELS)
        self.faces = find_faces(self.photo.rgb)
        if not self.faces:
            raise UsageError("no face found in the photo (a roughly frontal face of at least about 40 pixels)")
        self._begin(sid, folder, services, "uploaded")
        self._frame = self._encode(self._display(self.photo.rgb))

    def _begin(self, sid: str, folder: Path, services: "Services", state: str) -> None:
        """What every session holds: its folder, job, history of rounds and frame counter."""
        self.id = sid
        self.dir = folder
        self.run_root = folder / "run"
        self.services = services
        self.state = state
        self.message = ""
        self.progress = Progress()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.last_seen = time.time()
        self.handles: list = []
        self.targets: list = []
        self.G = None  # the generator of the face being edited (its tuned copy for a photo)
        self.face: Optional[FaceState] = None  # the face being edited
        self.edits: Dict[int, FaceState] = {}  # every face inverted so far, by index
        self.frame_version = 0

    # the face being edited ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """The run folder of the face being edited (run/faces/N), or the session's run root."""
        return self.face.run_dir if self.face is not None else self.run_root

    @property
    def w_pivot(self) -> Optional[torch.Tensor]:
        return self.face.w_pivot if self.face is not None else None

    @property
    def align(self) -> Optional[AlignRecord]:
        return self.face.align if self.face is not None else None

    @property
    def rounds(self) -> List[dict]:
        return self.face.rounds if self.face is not None else []

    # display helpers -------------------------------------------------------------------------
    @property
    def picture_size(self) -> tuple:
        """(width, height) of the picture the page shows and its points are in (the photo's)."""
        return self.photo.size

    @property
    def inverse(self) -> np.ndarray:
        """The drag pixels -> picture pixels matrix (aligned crop -> photo)."""
        return self.align.inverse

    @property
    def display_scale(self) -> float:
        return min(1.0, DISPLAY_MAX_SIDE / max(self.picture_size))

    def _display(self, rgb: np.ndarray) -> np.ndarray:
        s = self.display_scale
        return rgb if s == 1.0 else cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)

    @staticmethod
    def _encode(rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    def frame(self) -> bytes:
        return self._frame

    def _set_frame(self, rgb: np.ndarray) -> None:
        """Publish `rgb` (already at display size) as the frame."""
        self._frame = self._encode(rgb)
        self.frame_version += 1

    # jobs -------------------------------------------------------------------------------------
    def _start(self, state: str, target: Callable[[], None]) -> None:
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                raise UsageError(f"busy ({self.state}); wait or press Stop")
            self.stop_event.clear()
            self.state = state
            self.message = ""

            def run() -> None:
                try:
                    target()
                except Exception as exc:
                    self.state, self.message = "error", job_message(exc, self.dir)

            self.thread = threading.Thread(target=run, daemon=True, name=f"photodrag-{self.id[:6]}-{state}")
            self.thread.start()

    def choose_face(self, index: int) -> None:
        """Edit face `index`: inverted on first choice (run/faces/N), its own rounds kept when another is chosen."""
        if not 0 <= index < len(self.faces):
            raise UsageError(f"face {index} does not exist ({len(self.faces)} found)")
        self._start("inverting", lambda: self._switch(index))

    def _switch(self, index: int) -> None:
        """Leave the face being edited (its current picture kept for the composite) and edit `index`."""
        if self.face is not None and self.face.index == index:
            self.state = "ready"
            return
        if self.face is not None:
            self.face.edited = self._picture(self.face.current_w())
        self.face, self.G = None, None  # one tuned generator in memory at a time
        known = self.edits.get(index)
        if known is None:
            known = self._invert(index)
        else:
            _, self.G, _ = load_inversion(known.run_dir, self.services.device)
        known.edited = None
        self.edits[index] = self.face = known
        self._show(known.current_w())
        self.state = "ready"

    def _invert(self, index: int) -> FaceState:
        """Align and invert face `index` into run/faces/N (the inversion cache makes a repeat quick)."""
        svc = self.services
        run_dir = self.run_root / "faces" / str(index)
        self.progress = Progress("align", 0, 1)
        run_align(self.photo.path, run_dir, size=svc.resolution, face=index)

        def on_step(phase, step, total, values):
            self.progress = Progress(phase, step, total)
            if self.stop_event.is_set():
                raise UsageError("stopped")

        with svc.cache.pinned() if svc.cache is not None else contextlib.nullcontext():
            # no other edit evicts the entry this session reads until its tuned generator is loaded
            run_invert(
                run_dir,
                svc.generator(),
                svc.model_name,
                svc.model_sha256,
                svc.inversion_config,
                svc.perceptual,
                svc.cache,
                progress=False,
                on_step=on_step,
            )
            w_pivot, self.G, _ = load_inversion(run_dir, svc.device)
        reconstruction = RunFolder(run_dir).read_image("invert", "reconstruction.png")
        return FaceState(index, run_dir, w_pivot, AlignRecord.load(run_dir), reconstruction)

    def _current_w(self) -> torch.Tensor:
        return self.face.current_w()

    def _picture(self, w: torch.Tensor) -> np.ndarray:
        """The aligned picture of `w` by the generator of the face being edited."""
        with torch.no_grad():
            return to_uint8(self.G.synthesis(w, noise_mode="const"))[0]

    def _shown_faces(self, w: torch.Tensor, points_aligned, live: bool) -> List[FaceImages]:
        """The faces a frame or the download composites: every face with a drag round, the face being
        edited at `w` (with `points_aligned`) when it has one or is being dragged (`live`), and with no
        round anywhere that face as it stands (its reconstruction shows how the inversion went)."""
        anything = any(f.rounds for f in self.edits.values())
        out = []
        for state in self.edits.values():
            if state is self.face:
                if live or state.rounds or not anything:
                    out.append(self._face_images(state, self._picture(w), points_aligned))
            elif state.rounds:
                out.append(self._face_images(state, state.edited, state.points()))
        return out

    @staticmethod
    def _face_images(state: FaceState, edited: np.ndarray, points) -> FaceImages:
        align = state.align
        return FaceImages(state.index, align.matrix, state.reconstruction, edited, align.aligned_landmarks, points)

    def _composited(self, w: torch.Tensor, points_aligned=(), display: bool = False, live: bool = False) -> np.ndarray:
        """The photo with every shown face put back by the session's blend, through the one pass that
        `edit --face all` runs (pipeline.group.composite_faces); at display resolution for live frames.
        `points_aligned` (handles, targets, final positions) shape the generator blend's mask."""
        faces = self._shown_faces(w, points_aligned, live)
        photo = self.photo.rgb
        if display and self.display_scale < 1.0:
            photo = self._display(photo)
            size = (photo.shape[1], photo.shape[0])
            faces = [dataclasses.replace(f, matrix=display_matrix(f.matrix, self.photo.size, size)) for f in faces]
        return composite_faces(photo, faces, self.services.blend).image

    def _show(self, w: torch.Tensor, points=(), live: bool = False) -> None:
        """Publish the composite with `w` for the face being edited (display resolution) as the frame."""
        self._set_frame(self._composited(w, [*self.face.points(), *points], display=True, live=live))

    def _request(self, pairs: List[DragPair], mask_path: Optional[Path], presets: Mapping[str, float]):
        """Aligned [N, 2, 2] points and mask: the one mapper the CLI uses, presets from this face's landmarks."""
        if self.w_pivot is None:
            raise UsageError("choose a face and wait for the inversion first")
        landmarks = self.align.aligned_landmarks if presets and self.align.has_landmarks else None
        return map_to_aligned(
            pairs,
            "photo",
            self.align.matrix,
            self.align.size,
            self.photo.size,
            mask_path=mask_path,
            presets=dict(presets),
            landmarks=landmarks,
        )

    def preset_arrows(self, presets: Mapping[str, float]) -> dict:
        """The drags these presets would make (nothing is dragged): photo and aligned pixels."""
        pts, _ = self._request([], None, presets) if any(presets.values()) else (np.zeros((0, 2, 2)), None)
        to_photo = lambda p: apply_matrix(self.inverse, p).tolist() if len(p) else []
        return {"handles": to_photo(pts[:, 0]), "targets": to_photo(pts[:, 1]), "aligned": pts.tolist()}

    def start_drag(
        self,
        drags: List[dict],
        mask_png: Optional[str],
        settings: Mapping[str, float],
        presets: Optional[Mapping[str, float]] = None,
    ) -> None:
        """Start a drag round; `settings` are DragConfig values over the server's (steps at least)."""
        if self.thread is not None and self.thread.is_alive():
            raise UsageError(f"busy ({self.state}); wait or press Stop")
        if self.w_pivot is None:
            raise UsageError("choose a face and wait for the inversion first")
        presets = dict(presets or {})
        pairs = [DragPair(tuple(map(float, d["handle"])), tuple(map(float, d["target"]))) for d in drags]
        mask_path = None
        if mask_png:
            mask_path = self.dir / "mask.png"
            self._save_mask(mask_png, mask_path)
        config = dataclasses.replace(self.services.drag_config or DragConfig(), **settings)
        if not 1 <= config.steps <= MAX_DRAG_STEPS:
            raise UsageError(f"steps must be between 1 and {MAX_DRAG_STEPS}")
        pts, mask = self._request(pairs, mask_path, presets)
        mask_png = mask_path.read_bytes() if mask_path else None  # the painted mask of this round
        self._start("dragging", lambda: self._drag(pairs, pts, mask, config, presets, mask_png))

    def _save_mask(self, data_url: str, path: Path) -> None:
        """A painted mask (PNG data URL at display size) -> a photo-size mask file; never a path."""
        if not data_url.startswith("data:image/png;base64,"):
            raise UsageError("the mask must be a PNG image")
        try:
            raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                if img.format != "PNG" or img.width * img.height > MAX_UPLOAD_PIXELS:
                    raise UsageError("the mask must be a PNG image no larger than the photo")
                m = np.asarray(img.convert("RGBA"))
        except (ValueError, OSError):
            raise UsageError("the mask is not a readable PNG image") from None
        painted = ((m[..., 3] > 0) & (m[..., :3].max(axis=2) > 0)).astype(np.uint8) * 255
        full = cv2.resize(painted, self.picture_size, interpolation=cv2.INTER_NEAREST)
        Image.fromarray(full).save(path)

    def _drag(
        self,
        pairs,
        pts: np.ndarray,
        mask,
        config: DragConfig,
        presets: Optional[Dict[str, float]] = None,
        mask_png: Optional[bytes] = None,
    ):
        inverse = self.inverse
        to_photo = lambda p: apply_matrix(inverse, p).tolist()
        self.targets = to_photo(pts[:, 1])
        self.handles = to_photo(pts[:, 0])
        last = [0.0]

        def on_state(state) -> None:
            self.progress = Progress("drag", state.step, config.steps)
            self.handles = to_photo(state.handles.cpu().numpy())
            if time.time() - last[0] > FRAME_EVERY_S:
                last[0] = time.time()
                self._show(state.w, points=np.concatenate([pts[:, 0], pts[:, 1]]), live=True)

        state = run_drag(
            self.run_dir,
            pts,
            mask,
            config,
            device=self.services.device,
            progress=False,
            callback=on_state,
            w_start=self._current_w(),
            should_stop=self.stop_event.is_set,
            presets=presets,
        )
        face = self.face
        face.history.append(state.w.detach().clone())
        record = DragRecord.load(self.run_dir)
        face.round_points.append(record.aligned_points)
        face.rounds.append(
            {
                "drags": [{"handle": list(p.handle), "target": list(p.target)} for p in pairs],
                "drag": {name: getattr(config, name) for name in DRAG_OPTIONS},
                "presets": dict(presets or {}),
                "latent": config.latent,
                "mask_png": mask_png,
            }
        )
        self.handles = to_photo(state.handles.cpu().numpy())
        self._show(self._current_w())
        self.message = (
            f"{record.stop_reason} after {record.steps} steps; mean distance {record.mean_distance_photo:.1f} px"
        )
        if presets:
            self.message += "; " + " | ".join(line.strip() for line in record.preset_table())
        self.state = "ready"

    def stop(self) -> None:
        self.stop_event.set()

    def undo(self) -> None:
        self._idle_only()
        face = self.face
        if face.history:
            face.history.pop()
            face.rounds.pop()
            face.round_points.pop()
        self._show(self._current_w())
        self.handles, self.targets = [], []

    def reset(self) -> None:
        self._idle_only()
        self.face.history, self.face.rounds, self.face.round_points = [], [], []
        self._show(self._current_w())
        self.handles, self.targets = [], []

    def _idle_only(self) -> None:
        if self.w_pivot is None:
            raise UsageError("nothing to undo yet")
        if self.thread is not None and self.thread.is_alive():
            raise UsageError("stop the running job first")

    # results ------------------------------------------------------------------------------------
    def status(self) -> dict:
        self.last_seen = time.time()
        return {
            "state": self.state,
            "message": self.message,
            "phase": self.progress.phase,
            "step": self.progress.step,
            "total": self.progress.total,
            "handles": self.handles,
            "targets": self.targets,
            "rounds": len(self.rounds),
            "face": self.face.index if self.face is not None and self.faces else None,
            "edited_faces": sorted(i for i, f in self.edits.items() if f.rounds),
            "mask": self._mask() is not None,
            "frame_version": self.frame_version,
        }

    def result(self) -> tuple:
        """(bytes, file name, media type) of the full-size edited photo in the photo's format."""
        if self.w_pivot is None:
            raise UsageError("nothing to download yet")
        out = self._composited(self._current_w(), self.face.points())
        ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}.get(
            self.photo.format, ".png"
        )
        path = self.dir / f"edited{ext}"
        save_like(path, out, self.photo)
        media = {
            ".jpg": "image/jpeg",
            ".png": "image/png",
            ".webp": "image/webp",
            ".bmp": "image/bmp",
            ".tif": "image/tiff",
        }[ext]
        return path.read_bytes(), edited_name(self.photo.path, ext), media

    def _mask(self) -> Optional[bytes]:
        """The painted mask (PNG, picture pixels) of the one round a one-face recipe replays, if any."""
        return self.rounds[-1].get("mask_png") if len(self.rounds) == 1 else None

    def mask_file(self) -> bytes:
        mask = self._mask()
        if mask is None:
            raise UsageError("the recipe's drag round painted no mask")
        return mask

    def recipe(self) -> dict:
        """What `edit --recipe` replays to the download's bytes: the one edited face's round, or each
        edited face's round as a several-face recipe ("align.face" a list, "faces" their drags)."""
        edited = [self.edits[i] for i in sorted(self.edits) if self.edits[i].rounds]
        if len(edited) <= 1:
            return self._face_recipe(edited[0] if edited else self.face)
        check_group_rounds(edited)
        return {
            **self._recipe_base(edited[0]),
            "align": {"face": [f.index for f in edited], "size": edited[0].align.size},
            "faces": {str(f.index): face_edit(f.rounds[0]).to_json() for f in edited},
        }

    def _face_recipe(self, face: Optional[FaceState]) -> dict:
        rounds = face.rounds if face is not None else []
        if len(rounds) != 1:
            raise UsageError(
                "a recipe replays one round of drags from the inversion: "
                f"this session has {len(rounds)}; reset and drag once to get one"
            )
        return {
            **self._recipe_base(face),
            "drags": rounds[0]["drags"],
            **({"presets": rounds[0]["presets"]} if rounds[0].get("presets") else {}),
            **({"mask": {"path": "mask.png"}} if rounds[0].get("mask_png") is not None else {}),  # the download
            "align": {"face": face.align.face_index, "size": face.align.size},
        }

    def _recipe_base(self, face: FaceState) -> dict:
        return {
            "version": 1,
            "model": self.services.model_name,
            "coords": "photo",
            "invert": self.services.inversion_config.options(),  # the session's profile and steps
            "drag": face.rounds[0]["drag"],  # the round's steps, lr, lambda_mask, r1, r2
            "composite": {"blend": self.services.blend},
        }

    def run_zip(self) -> bytes:
        """The session's run folder (every face's run/faces/N, or a seed's run) as a zip."""
        root = self.run_root
        if not root.is_dir():
            raise UsageError("nothing to download yet")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(root.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts):
                    zf.write(f, f"run/{f.relative_to(root)}")
        return buf.getvalue()

    def close(self) -> None:
        self.stop()
        if self.thread is not None:
            self.thread.join(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def face_edit(round_: dict) -> FaceEdit:
    """A drag round of the web editor as a several-face recipe's per-face edit."""
    drags = tuple((tuple(d["handle"]), tuple(d["target"])) for d in round_["drags"])
    return FaceEdit(drags=drags, presets=dict(round_.get("presets") or {}))


def check_group_rounds(faces: List[FaceState]) -> None:
    """What a several-face recipe can replay: one round per face, one drag setting, no painted mask."""
    for f in faces:
        if len(f.rounds) != 1:
            raise UsageError(
                f"a recipe replays one round of drags per face: face {f.index} has {len(f.rounds)}; "
                "undo or reset it to one"
            )
        if f.rounds[0].get("mask_png") is not None:
            raise UsageError(
                f"a recipe of several faces holds no painted mask (face {f.index} has one); "
                "download the photo, or edit that face alone"
            )
    first = faces[0].rounds[0]["drag"]
    for f in faces[1:]:
        if f.rounds[0]["drag"] != first:
            raise UsageError(
                f"faces {faces[0].index} and {f.index} were dragged with different settings (steps, lr, r1, r2, "
                "lambda_mask): a recipe of several faces holds one; drag them alike"
            )


@dataclass
class Services:
    """What sessions share: the opened networks (the generator loaded once), the inversion cache,
    the inversion and drag options.  `models` comes from `pipeline.models.open_models`."""

    models: OpenModels
    cache: object
    inversion_config: object
    drag_config: object = None  # DragConfig; its step limit comes from each request
    blend: str = DEFAULT_BLEND  # how edits go back into the photo (pipeline.composite)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.models.chosen.name

    @property
    def model_sha256(self) -> str:
        return self.models.chosen.sha256

    @property
    def resolution(self) -> int:
        return self.models.chosen.resolution

    @property
    def device(self):
        return self.models.device

    def generator(self):
        with self._lock:
            return self.models.generator()

    def perceptual(self, net: str, resolution: Optional[int]):
        with self._lock:
            return self.models.perceptual(net, resolution)

    def installed(self, name: str) -> bool:
        """Whether registry generator `name` is in this server's weights store (nothing is fetched)."""
        store = self.models.store
        return store is not None and name in GENERATOR_NAMES and store.status(name).present

    def open_installed(self, name: str, landmarks: bool) -> OpenModels:
        """Installed registry generator `name`, loaded once and shared like the served one."""
        with self._lock:
            m = self.models
            opened = open_models(name, m.store, m.device, loaded=m.loaded, landmarks=landmarks, fetch=False)
            opened.generator()
            return opened


@dataclass(frozen=True)
class Limits:
    """How much the editor holds: sessions, their photos' pixels, and how long an unattended one lives."""

    max_sessions: int = 8
    max_pixels: int = 200_000_000  # about 5 MiB of memory per megapixel, before the generator copies
    idle_stop_s: float = 10.0  # a page that stops polling has its job stopped and may be evicted
    idle_drop_s: float = 15 * 60.0  # and is dropped after this long


class ServerBusy(Exception):
    """Every session slot is held by an open page or a running job (answered 503)."""


class DiskFull(DiskFullError):
    """The server's disk has no room for what a request must store (answered 507; no server path)."""


def disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from or during, says the disk (or quota) is full."""
    return is_disk_full(exc)


def no_space_message(root: Path) -> str:
    """One line for a full disk, with the free space but no server path."""
    try:
        free = f" ({shutil.disk_usage(root).free / 2**20:.1f} MiB free)"
    except OSError:
        free = ""
    return f"no space left on the server's disk{free}; free some space and try again"


def job_message(exc: Exception, folder: Path) -> str:
    """The status line of a failed job: a full disk says so (no path), our errors their own words."""
    if disk_full(exc):
        return no_space_message(folder)
    if isinstance(exc, PhotodragError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"  # reported, the server keeps running


def upload_name(filename: str) -> str:
    """`photo.EXT` with the client's extension when it is an image one (only the decoder decides)."""
    suffix = Path(filename or "").suffix.lower()
    return "photo" + (suffix if suffix in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff") else ".img")


def header_pixels(data: bytes) -> int:
    """The pixel count an image file declares (its header only, nothing decoded); 0 when unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.width) * int(img.height)
    except Exception:  # the decode that follows says what is wrong with it
        return 0


class SessionManager:
    """Creates sessions with unguessable ids within `limits`; stops and drops those nobody watches.

    When a new upload does not fit, the unattended sessions (no job running, page not polling)
    are evicted, the longest unattended first; when that is not enough it is refused (ServerBusy).
    """

    def __init__(self, root: Path, services: Services, limits: Limits = Limits()):
        self.root = Path(root)
        self.services = services
        self.limits = limits
        self.sessions: Dict[str, Session] = {}
        self.pending: Dict[str, int] = {}  # uploads being decoded: their declared pixels
        self.lock = threading.Lock()

    def create(self, data: bytes, filename: str) -> Session:
        if not data:
            raise UsageError("the upload is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise UsageError(f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        pixels = min(header_pixels(data), MAX_UPLOAD_PIXELS)  # larger photos are refused by the decode
        if pixels > self.limits.max_pixels:
            raise UsageError(
                f"the photo has {pixels / 1e6:.1f} megapixels; this editor holds at most "
                f"{self.limits.max_pixels / 1e6:.1f} in all (serve --max-megapixels)"
            )

        def make(sid: str, folder: Path) -> Session:
            path = folder / upload_name(filename)  # the client's name is never used as a path
            self._store(path, data)
            try:
                return Session(sid, folder, path, self.services)
            except UsageError as exc:
                raise UsageError(str(exc).replace(str(path), "the upload")) from None  # no server paths

        return self.add(pixels, make)

    def add(self, pixels: int, make: Callable[[str, Path], Session]) -> Session:
        """A session made by `make(id, folder)` in a reserved slot and a new folder (removed again when
        `make` fails): an upload's session, or a start with no upload (a seed)."""
        sid = secrets.token_urlsafe(16)
        for old in self._reserve(sid, pixels):
            old.close()
        folder = self.root / sid
        try:
            self._store_dir(folder)
            session = make(sid, folder)
        except BaseException:
            self._release(sid, folder)
            raise
        with self.lock:
            self.pending.pop(sid, None)
            self.sessions[sid] = session
        return session

    def _store_dir(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            if disk_full(exc):
                raise DiskFull(no_space_message(self.root)) from None
            raise

    def _store(self, path: Path, data: bytes) -> None:
        """The upload in its session folder; a full disk is a DiskFull (the caller removes the folder)."""
        try:
            path.write_bytes(data)
        except OSError as exc:
            if disk_full(exc):
                raise DiskFull(no_space_message(self.root)) from None
            raise

    def _release(self, sid: str, folder: Path) -> None:
        with self.lock:
            self.pending.pop(sid, None)
        shutil.rmtree(folder, ignore_errors=True)

    def _reserve(self, sid: str, pixels: int) -> List[Session]:
        """Hold a slot for a new upload: the sessions evicted to make room (to be closed), or ServerBusy."""
        lim, now = self.limits, time.time()
        with self.lock:
            count = len(self.sessions) + len(self.pending)
            used = sum(_pixels(s) for s in self.sessions.values()) + sum(self.pending.values())
            unattended = sorted(
                (s for s in self.sessions.values() if not _running(s) and now - s.last_seen > lim.idle_stop_s),
                key=lambda s: s.last_seen,
            )
            evict = []
            while (count + 1 > lim.max_sessions or used + pixels > lim.max_pixels) and unattended:
                s = unattended.pop(0)
                evict.append(s)
                count, used = count - 1, used - _pixels(s)
            if count + 1 > lim.max_sessions or used + pixels > lim.max_pixels:
                raise ServerBusy(
                    f"the editor is busy: {count} sessions (limit {lim.max_sessions}) holding "
                    f"{used / 1e6:.1f} of {lim.max_pixels / 1e6:.1f} megapixels are in use; "
                    "try again when a page is closed"
                )
            for s in evict:
                del self.sessions[s.id]
            self.pending[sid] = pixels
        return evict

    def get(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            raise KeyError(sid)
        return session

    def close(self, sid: str) -> None:
        with self.lock:
            session = self.sessions.pop(sid, None)
        if session is not None:
            session.close()

    def close_all(self, timeout: float = 5.0) -> None:
        """Stop every job, wait for them up to `timeout` in all, and remove every session's folder."""
        with self.lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for s in sessions:
            s.stop()
        deadline = time.time() + timeout
        for s in sessions:
            if s.thread is not None:
                s.thread.join(timeout=max(0.0, deadline - time.time()))
            shutil.rmtree(s.dir, ignore_errors=True)

    def reap(self) -> None:
        now = time.time()
        for sid, s in list(self.sessions.items()):
            if now - s.last_seen > self.limits.idle_stop_s:
                s.stop()
            if now - s.last_seen > self.limits.idle_drop_s:
                self.close(sid)


def _running(s: Session) -> bool:
    return s.thread is not None and s.thread.is_alive()


def _pixels(s: Session) -> int:
    return s.picture_size[0] * s.picture_size[1]
