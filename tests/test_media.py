"""Image validation, normalization, fingerprints and the write-once store (no database)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from _ingest_fixtures import bomb_png, exif_rotated_jpeg, image_bytes
from PIL import Image

from curation import media
from curation.media import DecodedImage, ImageRejected, MediaLimits, MediaStore, decode_image, hamming

LIMITS = MediaLimits()


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, name="f.jpg", limits=kw.get("limits", LIMITS))
    assert "f.jpg" in str(info.value)
    return info.value.reason


def test_clean_jpeg_keeps_bytes_and_hash():
    data = image_bytes(1)
    out = decode_image(data, name="a.jpg", limits=LIMITS)
    assert out.data == data and out.ext == "jpg" and (out.width, out.height) == (64, 48)
    assert out.sha256 == media.sha256_hex(data) and len(out.phash) == 16 and out.notes == ()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", media.EMPTY),
        (b"this is not an image at all", media.NOT_AN_IMAGE),
        (b"<html><body>404</body></html>", media.NOT_AN_IMAGE),
        (image_bytes(2)[:300], media.TRUNCATED),
        (image_bytes(2, size=(1, 1)), media.TOO_SMALL),
        (bomb_png(), media.BOMB),
    ],
    ids=["zero-byte", "text", "html", "truncated", "1x1", "bomb"],
)
def test_bad_images_rejected_with_reason(data, reason):
    assert _reason(data) == reason


def test_corrupt_jpeg_body():
    data = bytearray(image_bytes(3, size=(128, 96)))
    data[200:600] = b"\xff\x00" * 200  # scrambled entropy-coded data
    with pytest.raises(ImageRejected) as info:
        decode_image(bytes(data[: len(data) // 2]), name="c.jpg", limits=LIMITS)
    assert info.value.reason in (media.CORRUPT, media.TRUNCATED)


def test_bomb_under_pil_limit_uses_our_limit():
    assert _reason(image_bytes(4, size=(200, 200), fmt="PNG"), limits=MediaLimits(max_pixels=10_000)) == media.BOMB


@pytest.mark.parametrize(
    ("data", "note"),
    [
        (image_bytes(6, fmt="JPEG", mode="CMYK"), "cmyk_to_rgb"),
        (image_bytes(7, fmt="PNG", mode="RGBA"), "alpha_on_white"),
        (image_bytes(8, fmt="PNG", mode="P"), "p_to_rgb"),
    ],
    ids=["cmyk", "rgba", "palette"],
)
def test_converted_modes_become_rgb(data, note):
    out = decode_image(data, name="m", limits=LIMITS)
    assert note in out.notes
    assert Image.open(io.BytesIO(out.data)).mode == "RGB"
    assert out.sha256 == media.sha256_hex(out.data)
    # deterministic re-encode: same input, same identity
    assert decode_image(data, name="m", limits=LIMITS).sha256 == out.sha256


def test_16bit_png_scaled_to_8bit():
    arr = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 20).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    out = decode_image(buf.getvalue(), name="d16.png", limits=LIMITS)
    assert "16bit_to_8bit" in out.notes
    stored = Image.open(io.BytesIO(out.data))
    assert stored.mode in ("L", "RGB") and np.asarray(stored).max() > 200


def test_exif_rotation_stored_upright():
    out = decode_image(exif_rotated_jpeg(), name="r.jpg", limits=LIMITS)
    assert "exif_rotated" in out.notes
    assert (out.width, out.height) == (32, 64)
    stored = Image.open(io.BytesIO(out.data))
    assert stored.size == (32, 64) and stored.getexif().get(0x0112, 1) == 1


def test_phash_near_for_reencoded_far_for_different():
    a = decode_image(image_bytes(9, size=(128, 96), quality=95), name="a", limits=LIMITS)
    b = decode_image(image_bytes(9, size=(128, 96), quality=40), name="b", limits=LIMITS)
    c = decode_image(image_bytes(10, size=(128, 96)), name="c", limits=LIMITS)
    assert a.sha256 != b.sha256
    assert hamming(a.phash, b.phash) <= 4
    assert hamming(a.phash, c.phash) > 10


def test_store_write_once(tmp_path):
    out = decode_image(image_bytes(11), name="a", limits=LIMITS)
    store = MediaStore(tmp_path)
    path = store.put(out)
    assert path == tmp_path / out.sha256[:2] / f"{out.sha256}.jpg" and path.read_bytes() == out.data
    mtime = path.stat().st_mtime_ns
    assert store.put(out) == path and path.stat().st_mtime_ns == mtime
    assert not list(path.parent.glob(".tmp-*"))


def test_limits_validation():
    from curation.errors import ConfigError

    with pytest.raises(ConfigError, match="min_side"):
        MediaLimits(min_side=0)
    assert isinstance(decode_image(image_bytes(12), name="x", limits=LIMITS), DecodedImage)
