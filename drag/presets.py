"""Edits by name: drags and a default mask derived from the 68 dlib landmarks of the aligned face.

A preset moves a few landmarks (dlib 68-point indices, 0-based) by fixed offsets written in the
face's own axes and in units of the inter-ocular distance (IOD, the distance between the two eye
centres, means of points 36-41 and 42-47), so the same amount means the same edit on every face,
resolution and slight rotation of the crop:

    target = landmark + amount * IOD * (du * x_axis + dv * y_axis)

x_axis is the unit vector from the image-left eye centre (36-41) to the image-right one (42-47),
y_axis is x_axis turned 90 degrees so that it points down the face (image y grows downwards).
Positive amounts do what the name says (more smile, mouth open, eyes open, brows up, wider jaw,
head turned towards the image right, head tilted up); negative amounts do the opposite.

Combining presets: a landmark moved by several presets gets the sum of their motions (one handle,
one target), since two handles on one point with different targets contradict each other. An
amount of 0 moves nothing, and points that would move less than half a pixel are left out
(DragGAN refuses zero-length drags; drag.config.MIN_DRAG_PX).

After a drag, `preset_report` measures each preset's achieved motion on the landmarks detected
again on the edited face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import cv2
import numpy as np

from common.errors import UsageError
from drag.config import MIN_DRAG_PX

# One landmark's motion per unit amount: (dlib index, du, dv) in IOD along the face's axes.
Move = Tuple[int, float, float]


@dataclass(frozen=True)
class Preset:
    """A named edit: which landmarks move where per unit amount, and which region may move."""

    name: str
    description: str
    moves: Tuple[Move, ...]
    mask_groups: Tuple[Tuple[int, ...], ...]  # each group's convex hull, padded, may move
    mask_pad: float = 0.25  # padding around each hull, in IOD
    amount_range: Tuple[float, float] = (-1.0, 1.0)

    @property
    def landmarks(self) -> Tuple[int, ...]:
        return tuple(i for i, _, _ in self.moves)

    @property
    def unit(self) -> float:
        """Largest landmark motion at amount 1, in IOD."""
        return max(math.hypot(du, dv) for _, du, dv in self.moves)


def _mirror(indices_left: Sequence[int], indices_right: Sequence[int], du: float, dv: float) -> Tuple[Move, ...]:
    """Moves that are mirror images: image-left points get -du, image-right ones +du."""
    return tuple((i, -du, dv) for i in indices_left) + tuple((i, du, dv) for i in indices_right)


MOUTH = tuple(range(48, 68))
PRESETS: Dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "smile",
            "mouth corners outward and up (negative: down, a frown)",
            _mirror([48], [54], 0.08, -0.08),
            (MOUTH,),
            mask_pad=0.2,
        ),
        Preset(
            "mouth_open",
            "lower lip down, upper lip up a little (negative: close)",
            ((57, 0.0, 0.25), (66, 0.0, 0.25), (51, 0.0, -0.06), (62, 0.0, -0.06)),
            (MOUTH + (7, 8, 9),),
            mask_pad=0.2,
        ),
        Preset(
            "eyes_open",
            "upper eyelids up (negative: close the eyes)",
            ((37, 0.0, -0.06), (38, 0.0, -0.06), (43, 0.0, -0.06), (44, 0.0, -0.06)),
            (tuple(range(36, 42)), tuple(range(42, 48))),
            mask_pad=0.15,
        ),
        Preset(
            "eyebrows",
            "eyebrows up (negative: down)",
            tuple((i, 0.0, -0.10) for i in range(17, 27)),
            tuple((i, i + 1) for i in (*range(17, 21), *range(22, 26))),
            mask_pad=0.15,
        ),  # along each brow
        Preset(
            "jaw_width",
            "jaw sides outward (negative: a narrower jaw)",
            _mirror(range(3, 7), range(10, 14), 0.08, 0.0),
            (tuple(range(2, 8)), tuple(range(9, 15))),
            mask_pad=0.2,
        ),
        Preset(
            "head_yaw",
            "nose, mouth and chin sideways: turn towards the image right (negative: left)",
            ((27, 0.05, 0.0), (30, 0.12, 0.0), (33, 0.10, 0.0), (51, 0.08, 0.0), (57, 0.08, 0.0), (8, 0.08, 0.0)),
            (tuple(range(68)),),
            mask_pad=0.15,
        ),
        Preset(
            "head_pitch",
            "nose, mouth and chin up: tilt the head up (negative: down)",
            ((30, 0.0, -0.10), (33, 0.0, -0.10), (51, 0.0, -0.08), (57, 0.0, -0.08), (8, 0.0, -0.08)),
            (tuple(range(68)),),
            mask_pad=0.15,
        ),
    )
}


def known() -> str:
    return ", ".join(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; known presets: {known()}") from None


def check_amount(name: str, amount) -> float:
    """The amount as a float, or a one-line error when it is not a number or outside the range."""
    preset = get_preset(name)
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.integer, np.floating)):
        raise UsageError(f"preset {name}: the amount must be a number, got {amount!r}")
    value = float(amount)
    lo, hi = preset.amount_range
    if not math.isfinite(value):
        raise UsageError(f"preset {name}: the amount must be a finite number, got {value}")
    if not lo <= value <= hi:
        raise UsageError(f"preset {name}: the amount {value:g} is outside {lo:g}..{hi:g}")
    return value


def parse_preset(text: str) -> Tuple[str, float]:
    """'smile=0.5' -> ('smile', 0.5), with one-line errors for any other shape."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"--preset {text!r} is not NAME=AMOUNT (e.g. smile=0.5); known presets: {known()}")
    get_preset(name)
    try:
        amount = float(value)
    except ValueError:
        raise UsageError(f"--preset {text!r}: the amount {value.strip()!r} is not a number") from None
    return name, check_amount(name, amount)


def parse_presets(texts: Sequence[str]) -> Dict[str, float]:
    """Several --preset values; naming a preset twice is refused."""
    out: Dict[str, float] = {}
    for text in texts:
        name, amount = parse_preset(text)
        if name in out:
            raise UsageError(f"--preset {name} is given twice")
        out[name] = amount
    return out


def _landmarks(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise UsageError(f"presets need the 68 face landmarks (x, y), got an array of shape {lm.shape}")
    return lm


def face_axes(landmarks) -> Tuple[float, np.ndarray, np.ndarray]:
    """(IOD in pixels, x_axis, y_axis): eye line direction and its perpendicular pointing down the face."""
    lm = _landmarks(landmarks)
    left, right = lm[36:42].mean(0), lm[42:48].mean(0)
    iod = float(np.linalg.norm(right - left))
    if iod < 1e-6:
        raise UsageError("the eye centres coincide: these landmarks are not a face")
    x_axis = (right - left) / iod
    return iod, x_axis, np.array([-x_axis[1], x_axis[0]])


def preset_motion(landmarks, name: str, amount: float) -> Tuple[np.ndarray, np.ndarray]:
    """(landmark indices [K], displacements [K, 2] in pixels) that preset `name` asks for at `amount`."""
    preset = get_preset(name)
    amount = check_amount(name, amount)
    iod, x_axis, y_axis = face_axes(landmarks)
    idx = np.array(preset.landmarks, dtype=np.int64)
    uv = np.array([(du, dv) for _, du, dv in preset.moves], dtype=np.float64)
    return idx, amount * iod * (uv[:, :1] * x_axis + uv[:, 1:] * y_axis)


def preset_drags(landmarks, amounts: Mapping[str, float], size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(handles [N, 2], targets [N, 2]) in aligned pixels for several presets at once.

    Motions of one landmark under several presets add up; presets are taken in PRESETS order
    whatever the mapping's order (a recipe read back gives the same drags); landmarks moving less
    than half a pixel are left out; a handle or target outside the size x size crop is refused.
    """
    lm = _landmarks(landmarks)
    total: Dict[int, np.ndarray] = {}
    for name in sorted(amounts, key=lambda n: list(PRESETS).index(get_preset(n).name)):  # canonical order
        amount = amounts[name]
        idx, disp = preset_motion(lm, name, amount)
        if amount != 0 and np.linalg.norm(disp, axis=1).max() < MIN_DRAG_PX:
            raise UsageError(
                f"preset {name}={amount:g} moves its points less than half a pixel in this "
                f"{size}x{size} crop; use a larger amount"
            )
        for i, d in zip(idx.tolist(), disp):
            total[i] = total.get(i, np.zeros(2)) + d
    keep: List[int] = [i for i, d in total.items() if np.linalg.norm(d) >= MIN_DRAG_PX]
    handles = lm[keep].reshape(-1, 2)
    targets = handles + np.array([total[i] for i in keep]).reshape(-1, 2)
    for i, h, t in zip(keep, handles, targets):
        for what, p in (("", h), ("the target of ", t)):
            if not (0 <= p[0] <= size - 1 and 0 <= p[1] <= size - 1):
                raise UsageError(
                    f"{what}landmark {i} at ({p[0]:.1f}, {p[1]:.1f}) is outside the "
                    f"{size}x{size} face crop; use a smaller amount or another photo"
                )
    return handles, targets


def preset_mask(landmarks, names: Sequence[str], size: int) -> np.ndarray:
    """Float mask [size, size], 1 = may move: the union of each preset's padded landmark hulls."""
    lm = _landmarks(landmarks)
    iod, _, _ = face_axes(lm)
    mask = np.zeros((size, size), np.float32)
    for name in names:
        preset = get_preset(name)
        for group in preset.mask_groups:
            hull = np.zeros((size, size), np.uint8)
            cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(lm[list(group)]).astype(np.int32)), 1)
            # distance of each pixel to the hull (0 inside), then keep those within the padding
            dist = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5)
            mask[dist <= preset.mask_pad * iod] = 1.0
    return mask


def drag_disc_mask(pts: np.ndarray, landmarks, size: int, pad: float = 0.25) -> np.ndarray:
    """Float mask [size, size]: a band of `pad` IOD around each explicit drag (handle to target),
    so explicit drags mixed with presets can move under the presets' default mask."""
    iod, _, _ = face_axes(landmarks)
    mask = np.zeros((size, size), np.uint8)
    r = max(1, int(round(pad * iod)))
    for h, t in np.asarray(pts, dtype=np.float64).reshape(-1, 2, 2):
        cv2.line(mask, tuple(int(v) for v in np.rint(h)), tuple(int(v) for v in np.rint(t)), 1, 2 * r)
        for p in (h, t):
            cv2.circle(mask, tuple(int(v) for v in np.rint(p)), r, 1, -1)
    return mask.astype(np.float32)


def add_preset_drags(pts: np.ndarray, mask, landmarks, amounts: Mapping[str, float], size: int):
    """Explicit aligned drags [N, 2, 2] (N may be 0) plus the presets' drags, stacked, and the mask:
    the given one, else the presets' default mask (widened around explicit drags).

    One landmark handle given two targets (a preset and an explicit drag) is refused, and so is
    a request that drags nothing (every amount 0 and no explicit drag).
    """
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2, 2)
    handles, targets = preset_drags(landmarks, amounts, size)
    if len(pts) + len(handles) == 0:
        raise UsageError("nothing to drag: every preset amount is 0 and no --drag is given")
    for h in handles:
        if len(pts) and (np.linalg.norm(pts[:, 0] - h, axis=1) < MIN_DRAG_PX).any():
            raise UsageError(
                f"a --drag handle lands on a preset's landmark (at {h[0]:.1f}, {h[1]:.1f} in aligned pixels): "
                "give each handle one target"
            )
    stacked = np.concatenate([pts, np.stack([handles, targets], axis=1).reshape(-1, 2, 2)])
    if mask is None and len(handles):
        mask = preset_mask(landmarks, [n for n, a in amounts.items() if a != 0], size)
        if len(pts):
            mask = np.maximum(mask, drag_disc_mask(pts, landmarks, size))
    return stacked, mask


@dataclass(frozen=True)
class PresetMeasure:
    """One preset's requested and achieved motion, as means over its landmarks."""

    name: str
    amount: float
    requested_iod: float  # mean |requested displacement| / IOD
    requested_px: float  # the same in aligned pixels
    achieved_iod: float  # mean projection of (re-detected - original) on the requested direction / IOD
    achieved_px: float
    achieved_vector_px: Tuple[float, float]  # mean raw (re-detected - original), aligned pixels

    def to_json(self) -> dict:
        return {
            "amount": self.amount,
            "requested": {"iod": self.requested_iod, "px": self.requested_px},
            "achieved": {"iod": self.achieved_iod, "px": self.achieved_px, "vector_px": list(self.achieved_vector_px)},
        }


def measure_presets(before, after, amounts: Mapping[str, float]) -> List[PresetMeasure]:
    """Requested vs achieved motion per preset, from the landmarks before the drag and the ones
    detected again on the edited face (both aligned pixels; IOD from `before`).

    achieved = mean over the preset's landmarks of (after - before) projected on the unit
    requested direction; a preset at amount 0 requests and is measured along nothing (0).
    """
    before, after = _landmarks(before), _landmarks(after)
    iod, _, _ = face_axes(before)
    out = []
    for name, amount in amounts.items():
        idx, disp = preset_motion(before, name, amount)
        moved = after[idx] - before[idx]
        norms = np.linalg.norm(disp, axis=1)
        unit = np.divide(disp, norms[:, None], out=np.zeros_like(disp), where=norms[:, None] > 0)
        along = float(np.mean(np.sum(moved * unit, axis=1)))
        req = float(np.mean(norms))
        vec = moved.mean(0)
        out.append(
            PresetMeasure(
                name,
                float(amount),
                round(req / iod, 4),
                round(req, 3),
                round(along / iod, 4),
                round(along, 3),
                (round(float(vec[0]), 3), round(float(vec[1]), 3)),
            )
        )
    return out


# detect(rgb image, near (x, y)) -> the 68 landmarks [68, 2] of the face nearest `near`; raises
# UsageError when no face is found (the drag stage passes align's dlib detector)
Detect = Callable[[np.ndarray, np.ndarray], np.ndarray]


def preset_report(
    landmarks_aligned: np.ndarray, edited: np.ndarray, presets: Mapping[str, float], detect: Detect
) -> dict:
    """drag.json "presets": the landmarks detected again on the edited face and, per preset, the
    requested vs achieved motion; a face not found again is said so."""
    report = {
        "amounts": dict(presets),
        "face_found": False,
        "measured": {},
        "compared": "landmarks of the aligned photo vs landmarks detected again on the edited face",
    }
    try:
        again = detect(edited, np.asarray(landmarks_aligned).mean(0))
    except UsageError as exc:
        report["note"] = f"{exc}: achieved motion not measured"
        return report
    report["face_found"] = True
    report["measured"] = {m.name: m.to_json() for m in measure_presets(landmarks_aligned, again, presets)}
    return report
