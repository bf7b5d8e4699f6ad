"""atheris harness: photo decoding. Any bytes must give an 8-bit RGB image (which the embedder
can letterbox) or an ImageError; any other exception, a hang or a memory blow-up is a finding.

    python fuzz/images.py CORPUS_DIR [libFuzzer flags]   (python fuzz/run.py sets them up)
"""

from __future__ import annotations

import sys
import warnings

import atheris
import numpy  # noqa: F401 - imported before instrumentation: only our code and PIL are traced

with atheris.instrument_imports(include=["stylesense", "PIL"]):
    from stylesense.vision.images import ImageError, letterbox, load_image

MAX_PIXELS = 4_000_000  # the library's cap is 50 MP; a smaller one keeps each run fast


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris calls
    for draft in (None, 224):  # full decode, and the JPEG DCT-scaled one the embedder uses
        try:
            img = load_image(data, max_pixels=MAX_PIXELS, draft=draft)
        except ImageError as e:
            assert str(e), "an ImageError must say why"
            return
        assert img.mode == "RGB" and img.width > 0 and img.height > 0, (img.mode, img.size)
        assert letterbox(img, 224, 320).size == (224, 320)


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # PIL's notes on damaged files are not findings
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
