"""Image validation, decoding, hashing and content-addressed storage.

Every image that enters the dataset goes through :func:`decode_image`: it is checked (empty, not an
image, truncated, corrupt, too small, decompression bomb), normalized (EXIF rotation applied, CMYK,
16-bit, palette and alpha images converted to 8-bit RGB) and fingerprinted (sha256 of the stored
bytes, a 64-bit DCT perceptual hash). Clean JPEG/PNG/WebP files keep their original bytes, so an
image that reaches us twice, from two sources, hashes the same; converted images are re-encoded
deterministically. :class:`MediaStore` writes each image once, under its hash.

Pure functions except :class:`MediaStore`, which only writes under its root.

Example:
    >>> from curation.media import decode_image, MediaLimits
    >>> decode_image(b"", name="x.jpg", limits=MediaLimits())
    Traceback (most recent call last):
    ...
    curation.media.ImageRejected: x.jpg: empty file (0 bytes).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from curation.errors import ConfigError, InputError

# Reasons a file is rejected: stable strings used in summaries and tests.
EMPTY = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_SMALL = "too_small"
BOMB = "decompression_bomb"
MISSING = "missing_file"
UNSAFE_PATH = "unsafe_path"
UNREADABLE = "unreadable"

_KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_KEEP_MODES = {"RGB", "L"}
THUMB_SIDE = 128


class ImageRejected(InputError):
    """An image cannot be used; ``reason`` is one of the module's reason constants."""

    def __init__(self, name: str, reason: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class MediaLimits:
    """What an acceptable image is.

    Attributes:
        min_side: images with a side shorter than this are rejected (1×1 tracking pixels).
        max_pixels: width × height above this is treated as a decompression bomb and never decoded.
        jpeg_quality: quality used when a converted JPEG (CMYK, EXIF-rotated, 16-bit) is re-encoded.
    """

    min_side: int = 16
    max_pixels: int = 64_000_000
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if int(self.min_side) < 1:
            raise ConfigError(f"The `min_side` parameter must be an int in [1, inf). Got {self.min_side} instead.")
        if int(self.max_pixels) < int(self.min_side) ** 2:
            raise ConfigError(f"The `max_pixels` parameter must be >= min_side². Got {self.max_pixels} instead.")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ConfigError(f"The `jpeg_quality` parameter must be in [1, 100]. Got {self.jpeg_quality} instead.")


@dataclass(frozen=True)
class DecodedImage:
    """A validated image ready to store.

    Attributes:
        data: bytes to store (the original bytes unless a conversion was needed).
        ext: file extension of ``data`` without the dot.
        width, height: upright size in pixels.
        sha256: hex digest of ``data``: the identity of the image.
        phash: 64-bit perceptual hash as 16 hex digits.
        thumb: small upright RGB thumbnail (uint8, longest side ``THUMB_SIDE``) for slice statistics.
        notes: conversions applied, e.g. ``("exif_rotated", "cmyk_to_rgb")``.
    """

    data: bytes
    ext: str
    width: int
    height: int
    sha256: str
    phash: str
    thumb: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def mime_type(self) -> str:
        return {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[self.ext]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, *, name: str, limits: MediaLimits) -> DecodedImage:
    """Validate and normalize one encoded image.

    Args:
        data: the encoded file content.
        name: where it came from (file path or ``file.parquet row 12``), used in messages.
        limits: size limits.

    Raises:
        ImageRejected: with a reason constant and a message naming ``name``.
    """
    if not data:
        raise ImageRejected(name, EMPTY, "empty file (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            fmt = im.format
    except UnidentifiedImageError:
        raise ImageRejected(name, NOT_AN_IMAGE, f"not an image ({len(data)} bytes, no known image header).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(name, BOMB, "image header declares too many pixels (decompression bomb).") from None
    except (OSError, SyntaxError, ValueError) as e:
        if "truncat" in str(e).lower():
            raise ImageRejected(name, TRUNCATED, f"truncated image (file ends inside the header: {e}).") from None
        raise ImageRejected(name, CORRUPT, f"corrupt image header ({e}).") from None
    if width * height > limits.max_pixels:
        raise ImageRejected(
            name, BOMB, f"{width}×{height} = {width * height:,} pixels exceeds max_pixels={limits.max_pixels:,} "
            "(decompression bomb); raise `max_pixels` in the ingest config if this image is real."
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(name, TOO_SMALL, f"{width}×{height} is smaller than min_side={limits.min_side}.")
    try:
        im.load()
    except OSError as e:
        text = str(e)
        reason = TRUNCATED if "truncat" in text.lower() or "broken data stream" in text else CORRUPT
        raise ImageRejected(name, reason, f"{'truncated' if reason == TRUNCATED else 'corrupt'} image data ({text}).") from None
    except (SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageRejected(name, CORRUPT, f"corrupt image data ({e}).") from None

    notes: list[str] = []
    orientation = im.getexif().get(0x0112, 1) if fmt in ("JPEG", "WEBP", "PNG") else 1
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        notes.append("exif_rotated")
    im, converted = _to_8bit(im)
    notes.extend(converted)

    if fmt in _KEEP_FORMATS and not notes and im.mode in _KEEP_MODES:
        stored, ext = data, _KEEP_FORMATS[fmt]
    else:
        stored, ext = _encode(im.convert("RGB") if im.mode not in _KEEP_MODES else im, fmt, limits.jpeg_quality)
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return DecodedImage(
        data=stored,
        ext=ext,
        width=im.width,
        height=im.height,
        sha256=sha256_hex(stored),
        phash=phash_hex(rgb),
        thumb=thumbnail(rgb),
        notes=tuple(notes),
    )


def _to_8bit(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert any mode to 8-bit RGB or L, naming the conversion."""
    mode = im.mode
    if mode in _KEEP_MODES:
        return im, []
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L"), ["16bit_to_8bit"]
    if mode == "CMYK":
        return im.convert("RGB"), ["cmyk_to_rgb"]
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), ["alpha_on_white"]
    return im.convert("RGB"), [f"{mode.lower()}_to_rgb"]


def _encode(im: Image.Image, fmt: str | None, quality: int) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=quality, optimize=False)
        return buf.getvalue(), "jpg"
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), "png"


# Fingerprints -----------------------------------------------------------------------------------
_DCT_N = 32


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_DCT = _dct_matrix(_DCT_N)


def phash_hex(im: Image.Image) -> str:
    """64-bit DCT perceptual hash (the classic pHash: 32×32 luma, top-left 8×8 DCT vs its median)."""
    small = im.convert("L").resize((_DCT_N, _DCT_N), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.asarray(small, dtype=np.float64)  # [32, 32]
    coeffs = (_DCT @ pixels @ _DCT.T)[:8, :8]  # [8, 8] lowest frequencies
    bits = (coeffs > np.median(coeffs)).ravel()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def thumbnail(im: Image.Image, side: int = THUMB_SIDE) -> np.ndarray:
    """Upright RGB uint8 array [h, w, 3] with the longest side at most ``side``."""
    scale = min(1.0, side / max(im.width, im.height))
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    small = im.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0) if scale < 1 else im.convert("RGB")
    return np.asarray(small, dtype=np.uint8)


# Storage ----------------------------------------------------------------------------------------
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 3600.0  # a temporary file whose writer cannot be checked is stale after this


class MediaStore:
    """Content-addressed, write-once image files: ``<root>/<h[:2]>/<h>.<ext>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def put(self, image: DecodedImage) -> Path:
        """Write ``image`` unless a file with its hash exists; return its path.

        Writes go to a temporary file renamed into place, so an interrupted import never leaves a
        half-written image under a valid name, and two writers of the same image cannot clash.
        """
        path = self.path_for(image.sha256, image.ext)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-", suffix=f".{image.ext}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(image.data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


    def sweep_stale(self, *, older_than_s: float = STALE_TMP_S) -> int:
        """Remove temporary files that killed writers left; returns how many.

        A temporary file names its writer (``.tmp-<host>-<pid>-…``): on this host it is stale once
        that process is gone; other hosts' files (and older unnamed ones) once older than
        ``older_than_s``. A live writer's file is never touched.
        """
        import time

        from curation.processes import pid_alive

        if not self.root.is_dir():
            return 0
        host, now, removed = socket.gethostname(), time.time(), 0
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for tmp in folder.glob(f"{TMP_PREFIX}*"):
                writer = tmp.name[len(TMP_PREFIX):].rsplit("-", 2)
                mine = len(writer) == 3 and writer[0] == host and writer[1].isdigit()
                try:
                    stale = not pid_alive(int(writer[1]), None) if mine else now - tmp.stat().st_mtime > older_than_s
                    if stale:
                        tmp.unlink()
                        removed += 1
                except FileNotFoundError:  # its writer renamed or removed it meanwhile
                    continue
        return removed


# What :func:`open_rgb` raises for a file that is missing, truncated, not an image or a
# decompression bomb: callers catch these to report the file and go on.
OPEN_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def open_rgb(path: str | Path) -> Image.Image:
    """Open a stored image as upright RGB: the one loader prediction, training and Stage-2 share.

    Raises one of :data:`OPEN_ERRORS` (what PIL raises) so callers can report the file.
    """
    with Image.open(path) as im:
        im.load()
        return upright_rgb(im)


def upright_rgb(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says, in RGB (what :func:`open_rgb` returns)."""
    return ImageOps.exif_transpose(image).convert("RGB")
