"""The pixel colour descriptor on product shots whose colour and shape are known by construction."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from stylesense.vision.colour import DIM, colour_descriptor

RED, DARK_RED, BLUE, NAVY, YELLOW = (200, 30, 40), (150, 20, 30), (40, 80, 200), (30, 40, 90), (235, 210, 40)
WHITE, STUDIO_GREY = (255, 255, 255), (238, 238, 236)


def shirt(colour: tuple[int, int, int], background: tuple[int, int, int] = WHITE, size: tuple[int, int] = (224, 224),
          scale: float = 1.0) -> Image.Image:
    """A T-shirt silhouette (body and sleeves) centred on a plain studio background."""
    w, h = size
    img = Image.new("RGB", size, background)
    s = scale * min(w, h) / 224
    cx, cy = w / 2, h / 2
    outline = [(-35, -70), (-75, -45), (-60, -15), (-40, -25), (-40, 75), (40, 75), (40, -25), (60, -15), (75, -45),
               (35, -70), (15, -60), (-15, -60)]
    ImageDraw.Draw(img).polygon([(cx + x * s, cy + y * s) for x, y in outline], fill=colour)
    return img


def bag(colour: tuple[int, int, int], background: tuple[int, int, int] = WHITE) -> Image.Image:
    """A handbag: a wide body and a thick handle, another shape entirely."""
    img = Image.new("RGB", (224, 224), background)
    d = ImageDraw.Draw(img)
    d.rectangle((40, 95, 184, 185), fill=colour)
    d.arc((70, 40, 154, 130), 180, 360, fill=colour, width=10)
    return img


def solid(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (224, 224), colour)


def cos(a: Image.Image, b: Image.Image) -> float:
    return float(colour_descriptor(a) @ colour_descriptor(b))


def jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    """The photo after a round trip through JPEG, as catalogue photos come."""
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_shape_and_norm():
    v = colour_descriptor(shirt(RED))
    assert v.dtype == np.float32 and v.shape == (DIM,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert np.all(v >= 0)


def test_same_colour_closer_than_same_shape():
    red_shirt = shirt(RED)
    assert cos(red_shirt, bag(RED)) > cos(red_shirt, shirt(BLUE)) + 0.5
    assert cos(shirt(BLUE), bag(BLUE)) > cos(shirt(BLUE), bag(RED)) + 0.5


def test_similarity_falls_smoothly_with_the_colour_difference():
    """Soft binning: shades of navy ever further from the query score ever lower, with no cliff
    at a bin edge, and dark red is nearer red than blue is."""
    shades = [NAVY, (35, 48, 105), (40, 58, 125), (42, 68, 160), BLUE, YELLOW]
    scores = [cos(shirt(NAVY), shirt(c)) for c in shades]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert 0.5 < scores[1] < 1 and scores[2] > 0.3
    assert cos(shirt(DARK_RED), shirt(RED)) > cos(shirt(DARK_RED), shirt(BLUE))


@pytest.mark.parametrize("background", [WHITE, STUDIO_GREY])
def test_light_background_is_ignored(background):
    """A red shirt on white (or H&M's light grey) reads as red: like a photo that is all red,
    unlike one that is all background."""
    red_shirt = shirt(RED, background)
    assert cos(red_shirt, solid(RED)) > 0.95
    assert cos(red_shirt, solid(background)) < 0.1  # only the shirt's edge, blended in downscaling
    # the product's size in the frame hardly matters once the background is gone
    assert cos(shirt(RED, background, scale=0.6), red_shirt) > 0.95


def test_dark_background_counts():
    """No light studio border: nothing is masked, so the black around the shirt is part of it."""
    on_black = shirt(RED, (10, 10, 10))
    assert cos(on_black, solid((10, 10, 10))) > 0.3
    assert cos(on_black, solid(RED)) < cos(shirt(RED), solid(RED))


def test_white_product_on_white_falls_back_to_all_pixels():
    """An off-white shirt on white leaves (almost) no foreground: the whole photo counts, so it
    is finite and reads as white, not as empty."""
    white_shirt = shirt((250, 250, 248))
    v = colour_descriptor(white_shirt)
    assert np.all(np.isfinite(v)) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert cos(white_shirt, solid(WHITE)) > 0.95
    assert np.all(np.isfinite(colour_descriptor(solid(WHITE))))


def test_jpeg_size_and_mode_do_not_change_the_colour():
    red_shirt = shirt(RED)
    assert cos(jpeg(red_shirt), red_shirt) > 0.97
    assert cos(shirt(RED, size=(1200, 1800)), shirt(RED, size=(240, 360))) > 0.97
    rgba = red_shirt.convert("RGBA")
    np.testing.assert_allclose(colour_descriptor(rgba), colour_descriptor(red_shirt), atol=1e-6)
    assert colour_descriptor(Image.new("L", (1, 1), 128)).shape == (DIM,)


def test_deterministic():
    img = jpeg(bag(BLUE, STUDIO_GREY))
    np.testing.assert_array_equal(colour_descriptor(img), colour_descriptor(img.copy()))
