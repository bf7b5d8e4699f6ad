"""Safe image loading for catalogue photos.

Catalogue feeds contain every kind of broken file: missing paths, zero-byte uploads,
truncated downloads, HTML error pages saved as ``.jpg``, CMYK JPEGs from print workflows,
16-bit scans, transparent PNG cut-outs and the occasional decompression bomb. Everything
downstream (the embedder, the index) wants one thing: a fully decoded 8-bit RGB image or
a short, human-readable reason why there is none. That is what :func:`load_image` gives.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylesense.errors import InvalidInput
from stylesense.inputs import FileRefused, open_regular, read_capped, read_chunks

MAX_PIXELS = 50_000_000
"""Largest accepted width*height. 50 MP covers any camera photo, and decoding stays
below ~150 MB of RGB, while a bomb (tiny file claiming gigapixels) is refused unread."""

MAX_FILE_BYTES = 256 << 20
"""Largest photo file read (and hashed). Above any photo within MAX_PIXELS (50 MP is 150 MB
as uncompressed 8-bit RGB), and it bounds what a path to an endless or huge file can cost."""

# Only the formats a catalogue photo plausibly comes in: every extra decoder is extra
# attack surface, and with PIL's full plugin list some text files (XBM, XPM, EPS)
# would be "recognised" as images instead of reported as not-an-image.
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

# File signatures of the accepted formats: an unidentifiable file that starts with one of
# these is a damaged image (e.g. cut inside its header), not some other kind of file.
# (Only distinctive signatures: "BM" or "RIFF" alone would also match text or audio.)
_MAGICS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")

_WHITE = (255, 255, 255)


class ImageError(InvalidInput):
    """An image could not be loaded; ``str(err)`` is a short reason for people."""


class NotAnImage(ImageError):
    """The bytes are no image of an accepted format at all (text, a PDF, an HTML error page),
    as opposed to a damaged, truncated or oversized image: a server answers the two
    differently (415 Unsupported Media Type, 422)."""


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    draft: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into an 8-bit RGB image.

    A path is read only if it is a regular file of at most ``max_bytes`` (so ``/dev/zero`` or a
    FIFO is refused, not read forever); bytes are held to the same cap. The size is checked from the header before any pixel
    is decoded, so a bomb costs nothing. ``draft`` (a target side in pixels) lets JPEGs decode at 1/2, 1/4 or 1/8
    scale directly in the DCT, keeping at least ``draft`` px on both sides: the embedder
    only needs ~224 px, and this is the biggest single saving when indexing large photos.
    EXIF orientation is applied, transparency is composited on white (products are shot
    on white), animations yield their first frame.

    Raises:
        ImageError: with a short reason ("file not found", "truncated image", ...);
            NotAnImage when the bytes are no image of an accepted format.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > max_bytes:  # an upload: the same cap as a file
            raise ImageError(f"file too large: {len(data)} bytes > cap {max_bytes}")
        if not data:
            raise ImageError("empty file (0 bytes)")
        return _decode(io.BytesIO(data), max_pixels, draft)
    try:
        data = read_capped(source, max_bytes)
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except PermissionError:
        raise ImageError("cannot read file: permission denied") from None
    except FileRefused as exc:
        raise ImageError(str(exc)) from None
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ImageError("empty file (0 bytes)")
    return _decode(io.BytesIO(data), max_pixels, draft)


def _decode(fp: io.BufferedIOBase, max_pixels: int, draft: int | None) -> Image.Image:
    Image.init()  # registers the plugins so that Image.OPEN lists what this build decodes
    formats = [f for f in _FORMATS if f in Image.OPEN]
    try:
        with Image.open(fp, formats=formats) as img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError("corrupt image: zero size")
            if width * height > max_pixels:
                raise ImageError(f"image too large: {width * height} pixels > cap {max_pixels}")
            if draft and img.format in ("JPEG", "MPO"):
                img.draft("RGB", (draft, draft))
            img.load()
            rgb = _to_rgb(_exif_upright(img))
            # Detach from the file object, whatever path the conversion took.
            return rgb.copy() if rgb is img else rgb
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        # PIL's own global guard (2x Image.MAX_IMAGE_PIXELS) fired inside open().
        match = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = match.group(1) if match else "?"
        raise ImageError(f"image too large: {pixels} pixels > cap {max_pixels}") from None
    except UnidentifiedImageError:
        fp.seek(0)
        head = fp.read(12)
        if head.startswith(_MAGICS) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            raise ImageError("corrupt image: damaged header") from None
        raise NotAnImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # PIL reports damaged streams with a zoo of exception types.
        message = str(exc)
        if "truncated" in message.lower() or isinstance(exc, EOFError) or "not enough" in message:
            raise ImageError("truncated image") from None
        raise ImageError(f"corrupt image: {message[:80] or type(exc).__name__}") from None
    except MemoryError:
        raise ImageError("image too large to decode (out of memory)") from None


def _exif_upright(img: Image.Image) -> Image.Image:
    """Rotate as the camera's EXIF orientation says; a broken EXIF block is ignored
    (the pixels are still fine, only the tag is not)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - any EXIF parsing failure means "no rotation"
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, with alpha composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_deep_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    if mode == "P":
        palette = img.palette
        has_alpha = "transparency" in img.info or (palette is not None and palette.mode == "RGBA")
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        canvas = Image.new("RGB", img.size, _WHITE)
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"unsupported image mode {mode}") from exc


def _deep_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16/32-bit or float grey levels to 0..255 instead of clipping them.

    PIL's own ``convert('L')`` clips I;16 at 255, turning most 16-bit scans pure white.
    16-bit data is divided by 257 (65535 -> 255, exact for 8-bit data stored as 16-bit);
    32-bit integer data that fits 16 bits is treated the same, otherwise min-max scaled.
    """
    values = arr.astype(np.float64)
    if mode == "F":
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0.0 and hi <= 1.0:
            scaled = values * 255.0
        else:
            scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    elif mode.startswith("I;16") or (values.min() >= 0 and values.max() <= 65535):
        scaled = values / 257.0
    else:
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def letterbox(
    img: Image.Image, width: int, height: int | None = None, fill: tuple[int, int, int] = _WHITE
) -> Image.Image:
    """Fit ``img`` into a ``width`` x ``height`` canvas (square when ``height`` is None)
    without distorting it.

    The image is scaled until one side meets the canvas and the rest is padded with ``fill``
    (white, like the studio background of product shots), so a long dress and a square bag
    both keep their silhouette, which is what visual similarity should compare. Pillow's
    bicubic resize filters over the whole source footprint, so downscaling is antialiased.
    """
    height = width if height is None else height
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    scale = min(width / w, height / h)
    new_w = max(1, min(width, round(w * scale)))
    new_h = max(1, min(height, round(h * scale)))
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if (new_w, new_h) == (width, height):
        return resized
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(resized, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


# Media type and file extension per accepted format (MPO: a camera's multi-picture JPEG).
MEDIA_TYPES = {"JPEG": ("image/jpeg", "jpg"), "MPO": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"),
               "WEBP": ("image/webp", "webp"), "GIF": ("image/gif", "gif"), "BMP": ("image/bmp", "bmp"),
               "TIFF": ("image/tiff", "tif"), "AVIF": ("image/avif", "avif")}


def media_type(data: bytes) -> tuple[str, str] | None:
    """(media type, file extension) of an encoded photo, sniffed from its bytes (a client's
    Content-Type or file name says nothing reliable), or None where the bytes are no image
    of an accepted format. Reads the header only: ``load_image`` is what vouches for the rest."""
    Image.init()
    try:
        with Image.open(io.BytesIO(data), formats=[f for f in _FORMATS if f in Image.OPEN]) as img:
            return MEDIA_TYPES.get(img.format or "")
    except Exception:  # noqa: BLE001 - whatever PIL raises for bytes it cannot place
        return None


def thumbnail_jpeg(data: bytes, size: int, quality: int = 85) -> bytes:
    """The photo as a JPEG whose longest side is at most ``size`` px (never enlarged), decoded
    with the same safety as every photo (see :func:`load_image`)."""
    img = load_image(data, draft=size)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def crop(data: bytes, box: tuple[float, float, float, float]) -> bytes:
    """The region ``box`` = (left, top, right, bottom), as fractions of the width and height,
    of the photo ``data`` as PNG bytes (lossless: the search sees the pixels the shopper
    chose). Decoded with the same safety as every photo; an empty region is refused."""
    left, top, right, bottom = box
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise InvalidInput(f"the crop must lie inside the photo with left < right and top < bottom, got {box}")
    img = load_image(data)
    w, h = img.size
    region = (round(left * w), round(top * h), max(round(right * w), round(left * w) + 1),
              max(round(bottom * h), round(top * h) + 1))
    out = io.BytesIO()
    img.crop(region).save(out, "PNG")
    return out.getvalue()


def content_hash(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """SHA-256 hex digest of the file's bytes: re-embed an image only when it changed.

    Reads only what :func:`load_image` would (a regular file within ``max_bytes``); anything
    else raises OSError (FileRefused), which the import reports as a bad row."""
    digest = hashlib.sha256()
    with open_regular(path, max_bytes) as fp:
        for chunk in read_chunks(fp, max_bytes):
            digest.update(chunk)
    return digest.hexdigest()
