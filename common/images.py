"""Read photos the same way in every stage: upright, 8-bit RGB, alpha kept aside.

Handles JPEG/PNG/WebP/BMP/TIFF, EXIF orientation, grayscale, palette, RGBA/LA,
16-bit and CMYK images, and refuses decompression bombs, truncated files and
non-images with one clear line.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import UsageError

MAX_PIXELS = 100_000_000  # ~ a 10000 x 10000 photo; bigger is refused as a possible bomb
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO")


@dataclass(frozen=True)
class Photo:
    """An upright RGB photo (H x W x 3 uint8) with its alpha (H x W uint8) kept aside."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    path: Path
    sha256: str
    format: str
    exif_transposed: bool

    @property
    def size(self):
        """(width, height) after EXIF rotation."""
        return self.rgb.shape[1], self.rgb.shape[0]


def _to_uint8_rgb(img: Image.Image):
    """(rgb, alpha) as uint8 arrays from any PIL mode."""
    alpha = None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(np.rint(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "F":
        arr = np.asarray(img)
        gray = np.clip(np.rint(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        arr = np.asarray(img)
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    if mode.startswith("RGB") and mode != "RGB":  # e.g. 48-bit RGB reads as RGB in Pillow
        img = img.convert("RGB")
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.ascontiguousarray(np.asarray(img)), alpha


def load_photo(path, max_pixels: Optional[int] = None) -> Photo:
    """Decode `path` fully; any problem is a UsageError naming the file."""
    max_pixels = max_pixels or MAX_PIXELS
    path = Path(path)
    if not path.exists():
        raise UsageError(f"photo not found: {path}")
    if not path.is_file():
        raise UsageError(f"not a file: {path}")
    data = path.read_bytes()
    if not data:
        raise UsageError(f"{path} is empty")
    try:  # the limit is checked here, from the header, before decoding: no process-wide Pillow setting
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "?"
            w, h = img.size
            if w * h > max_pixels:
                raise UsageError(
                    f"{path} is {w}x{h} = {w * h / 1e6:.0f} MP, over the limit of {max_pixels / 1e6:.0f} MP"
                )
            img.load()
            exif_orientation = img.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(img)
            rgb, alpha = _to_uint8_rgb(upright)
    except UsageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(
            f"{path} is larger than the {max_pixels / 1e6:.0f} MP limit (refused as a possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise UsageError(f"{path} is not an image this tool can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path} could not be decoded ({exc}); is the file truncated or corrupt?") from None
    if fmt not in FORMATS:
        raise UsageError(f"{path} is a {fmt} image; supported: JPEG, PNG, WebP, BMP, TIFF")
    return Photo(
        rgb=rgb,
        alpha=alpha,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        exif_transposed=exif_orientation not in (1, None),
    )
