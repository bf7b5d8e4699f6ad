"""load_image / letterbox / content_hash on every kind of file a catalogue feed contains."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from stylesense.inputs import FileRefused
from stylesense.vision.images import MAX_FILE_BYTES, MAX_PIXELS, ImageError, content_hash, letterbox, load_image

from conftest import within

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def _jpeg_bytes(size: tuple[int, int] = (64, 48), quality: int = 95) -> bytes:
    """A real photo-like JPEG (gradient), so truncation hits entropy-coded data."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          np.full((h, w, 1), 90, np.float32)], axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _reason(source: Path | bytes, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)
    return str(info.value)


# --- bad inputs -----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.jpg") == "file not found"


def test_directory(tmp_path: Path) -> None:
    assert _reason(tmp_path) == "not a regular file (directory)"


def test_fifo_and_devices_are_refused_unread(tmp_path: Path) -> None:
    """A FIFO used to block open() forever and /dev/zero (size 0) to read as "empty file";
    hashing /dev/zero never ended."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    assert within(10, lambda: _reason(fifo)) == "not a regular file (pipe (FIFO))"
    assert within(10, lambda: _reason(Path("/dev/zero"))) == "not a regular file (character device)"
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(FileRefused, match="not a regular file"):
            within(10, lambda: content_hash(path))


def test_byte_cap_is_checked_before_and_while_reading(tmp_path: Path) -> None:
    big = tmp_path / "huge.jpg"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: refused from its size, never read
    assert _reason(big) == f"file too large: {MAX_FILE_BYTES + 1} bytes > cap {MAX_FILE_BYTES}"
    photo = _write(tmp_path, "a.jpg", _jpeg_bytes())
    assert _reason(photo, max_bytes=100).startswith("file too large")
    with pytest.raises(FileRefused, match="file too large"):
        content_hash(photo, max_bytes=100)
    # /proc files are regular but report size 0: only the count while reading catches them
    status = Path("/proc/self/status")
    if status.exists():
        assert _reason(status, max_bytes=100) == "file too large: more than 100 bytes"


def test_zero_bytes(tmp_path: Path) -> None:
    assert _reason(_write(tmp_path, "empty.jpg", b"")) == "empty file (0 bytes)"
    assert _reason(b"") == "empty file (0 bytes)"


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _jpeg_bytes((256, 256))
    assert _reason(_write(tmp_path, "cut.jpg", data[: len(data) // 2])) == "truncated image"


@pytest.mark.parametrize(("keep", "reason"), [(20, "corrupt image: damaged header"), (400, "truncated image")])
def test_jpeg_cut_inside_headers(tmp_path: Path, keep: int, reason: str) -> None:
    data = _jpeg_bytes((256, 256))
    assert _reason(_write(tmp_path, "stub.jpg", data[:keep])) == reason


def test_truncated_png(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    assert _reason(_write(tmp_path, "cut.png", data[: len(data) // 2])) == "truncated image"


def test_corrupt_png_data(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), RED).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 4 : idat + 12] = b"\xff" * 8  # garbage where the zlib stream starts
    assert _reason(_write(tmp_path, "bad.png", bytes(data))).startswith("corrupt image")


@pytest.mark.parametrize(
    "content",
    [b"just some text\n", b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
     b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", b"#define x_width 8\n"],
    ids=["text", "html", "pdf", "xbm-like"],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    assert _reason(_write(tmp_path, "fake.jpg", content)).startswith("not an image")


def test_bomb_beyond_pil_guard(tmp_path: Path) -> None:
    """20000x20000 (400 MP) also trips PIL's own DecompressionBombError; same reason."""
    path = _write(tmp_path, "bomb.png", _png_claiming(20000, 20000))
    assert path.stat().st_size < 200
    assert _reason(path) == f"image too large: 400000000 pixels > cap {MAX_PIXELS}"


def test_bomb_checked_from_header_before_decoding(tmp_path: Path, monkeypatch) -> None:
    """8000x8000 (64 MP) is under PIL's guard: only our header check stops it, unread."""

    def must_not_decode(self):  # pragma: no cover - reached only on failure
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_decode)
    path = _write(tmp_path, "bomb.png", _png_claiming(8000, 8000))
    assert _reason(path) == f"image too large: 64000000 pixels > cap {MAX_PIXELS}"


def test_custom_pixel_cap() -> None:
    assert _reason(_jpeg_bytes((100, 50)), max_pixels=4999) == "image too large: 5000 pixels > cap 4999"
    assert load_image(_jpeg_bytes((100, 50)), max_pixels=5000).size == (100, 50)


# --- colour modes ---------------------------------------------------------------------


def _roundtrip(tmp_path: Path, img: Image.Image, fmt: str, name: str, **save) -> Image.Image:
    path = tmp_path / name
    img.save(path, fmt, **save)
    out = load_image(path)
    assert out.mode == "RGB"
    return out


def test_rgb_jpeg_from_path_and_bytes(tmp_path: Path) -> None:
    data = _jpeg_bytes()
    from_path = load_image(_write(tmp_path, "ok.jpg", data))
    from_bytes = load_image(data)
    assert from_path.mode == from_bytes.mode == "RGB"
    assert from_path.size == (64, 48)
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red ink
    out = _roundtrip(tmp_path, cmyk, "JPEG", "cmyk.jpg", quality=95)
    assert _close(out.getpixel((16, 16)), RED)


def test_palette_with_transparency_on_white(tmp_path: Path) -> None:
    img = Image.new("P", (20, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (10, 0, 20, 10))  # right half: palette index 1 (blue)
    out = _roundtrip(tmp_path, img, "PNG", "p.png", transparency=0)  # index 0 (red) is transparent
    assert out.getpixel((2, 5)) == WHITE
    assert out.getpixel((15, 5)) == BLUE


def test_palette_without_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 128, 0] + [0] * 765)
    assert _roundtrip(tmp_path, img, "PNG", "p.png").getpixel((4, 4)) == (0, 128, 0)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red
    img.paste((255, 0, 0, 255), (10, 0, 15, 10))  # opaque red
    img.paste((0, 0, 255, 128), (15, 0, 20, 10))  # half-transparent blue
    out = _roundtrip(tmp_path, img, "PNG", "rgba.png")
    assert out.getpixel((2, 5)) == WHITE
    assert out.getpixel((12, 5)) == RED
    assert _close(out.getpixel((17, 5)), (127, 127, 255), tol=2)


def test_la_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("LA", (10, 10), (0, 0))
    img.paste((0, 255), (5, 0, 10, 10))
    out = _roundtrip(tmp_path, img, "PNG", "la.png")
    assert out.getpixel((2, 5)) == WHITE
    assert out.getpixel((7, 5)) == (0, 0, 0)


def test_16bit_grayscale_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 1000, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)  # I;16
    out = _roundtrip(tmp_path, img, "PNG", "g16.png")
    got = [out.getpixel((x, 0))[0] for x in range(4)]
    assert got == [0, 4, 128, 255]  # PIL's convert('L') would give [0, 255, 255, 255]
    assert out.getpixel((2, 0)) == (128, 128, 128)


def test_32bit_int_grayscale(tmp_path: Path) -> None:
    arr = np.array([[0, 65535, 32896]], dtype=np.int32)
    out = _roundtrip(tmp_path, Image.fromarray(arr, "I"), "TIFF", "i32.tif")
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 255, 128]


def test_one_bit(tmp_path: Path) -> None:
    img = Image.new("1", (8, 8), 0)
    img.paste(1, (4, 0, 8, 8))
    out = _roundtrip(tmp_path, img, "PNG", "bw.png")
    assert out.getpixel((1, 1)) == (0, 0, 0)
    assert out.getpixel((6, 1)) == WHITE


def test_exif_orientation_6_rotates_upright(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = _roundtrip(tmp_path, img, "JPEG", "rot.jpg", exif=exif, quality=95)
    assert out.size == (20, 40)
    assert _close(out.getpixel((10, 5)), RED)  # left edge became the top
    assert _close(out.getpixel((10, 35)), BLUE)


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 255, 0), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = load_image(path)
    assert out.size == (16, 16) and out.getpixel((8, 8)) == RED


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (BLUE, RED)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert load_image(path).getpixel((8, 8)) == BLUE


# --- draft decoding -------------------------------------------------------------------


def test_draft_decodes_jpeg_smaller_but_not_below_target(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.jpg", _jpeg_bytes((2000, 1500)))
    assert load_image(path).size == (2000, 1500)
    small = load_image(path, draft=224)
    assert small.mode == "RGB"
    assert min(small.size) >= 224
    assert small.size == (500, 375)  # 1/4 scale: 1/8 would give 187 px < 224


def test_draft_ignored_for_non_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (900, 600), RED).save(path)
    assert load_image(path, draft=224).size == (900, 600)


# --- letterbox / hash -----------------------------------------------------------------


def test_letterbox_pads_wide_image_on_white() -> None:
    out = letterbox(Image.new("RGB", (200, 100), RED), 64)
    assert out.size == (64, 64)
    assert out.getpixel((32, 2)) == WHITE and out.getpixel((32, 61)) == WHITE
    assert out.getpixel((32, 32)) == RED
    assert out.getpixel((0, 32)) == RED and out.getpixel((63, 32)) == RED


def test_letterbox_tall_image_custom_fill() -> None:
    out = letterbox(Image.new("RGB", (30, 90), BLUE), 60, fill=(0, 0, 0))
    assert out.size == (60, 60)
    assert out.getpixel((2, 30)) == (0, 0, 0) and out.getpixel((30, 30)) == BLUE


def test_letterbox_antialiases_downscale() -> None:
    """A 1-px checkerboard shrunk 8x must average to grey, not alias to black/white."""
    board = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = np.asarray(letterbox(Image.fromarray(board, "L"), 32), dtype=np.float32)
    assert out.shape == (32, 32, 3)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 3


def test_content_hash(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.jpg", _jpeg_bytes())
    assert content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    before = content_hash(path)
    path.write_bytes(_jpeg_bytes(quality=50))
    assert content_hash(path) != before


def test_crop_keeps_the_chosen_region_losslessly_and_refuses_an_empty_one() -> None:
    import io

    from PIL import Image

    from stylesense.errors import InvalidInput
    from stylesense.vision.images import crop

    img = Image.new("RGB", (200, 100), "white")
    img.paste((255, 0, 0), (100, 0, 200, 100))  # the right half is red
    buf = io.BytesIO()
    img.save(buf, "PNG")
    right = Image.open(io.BytesIO(crop(buf.getvalue(), (0.5, 0.0, 1.0, 1.0))))
    assert right.size == (100, 100) and right.getcolors() == [(10_000, (255, 0, 0))]
    with pytest.raises(InvalidInput, match="crop"):
        crop(buf.getvalue(), (0.6, 0.0, 0.6, 1.0))
