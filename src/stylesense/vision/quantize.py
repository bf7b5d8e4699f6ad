"""int8 inference: the exported model quantised with the ranges of real photos' activations.

Why: on a CPU without native bfloat16, fp32 is the slow path; int8 convolutions are the lever
left, most of all where the CPU has VNNI. Unlike bfloat16, int8 needs calibration: each
activation's range, read off real photos. Ranges read off one catalogue's photos serve another
catalogue's just as well (measured in docs/vision.md), so a home calibrates once, on the photos
of its first import, and keeps the quantised model beside the exported one.

Format: QDQ (QuantizeLinear / DequantizeLinear pairs around each op), weights int8 per output
channel, activations uint8, ranges by min / max over the calibration batches. OpenVINO runs
such a graph with int8 kernels; onnxruntime could too, but OpenVINO measured faster for it and
is the runtime whose instruction set can be limited for measuring (docs/vision.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CALIBRATION_PHOTOS = 128
"""Photos whose activations set the ranges: every canvas shape several times over, in under a minute."""
MIN_CALIBRATION_PHOTOS = 16
"""Fewer than this and the ranges would follow a few photos: the home waits for a larger import."""


def quantize(fp32_model: Path, batches: Iterable[np.ndarray], out: Path) -> None:
    """Write ``fp32_model`` quantised to int8, its activation ranges from ``batches`` (uint8
    NHWC arrays, as the model takes them), atomically to ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": np.ascontiguousarray(batch, dtype=np.uint8)}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=out.name + ".", dir=out.parent) as tmp:
        prepared, quantised = Path(tmp) / "prepared.onnx", Path(tmp) / out.name
        # folds and fuses the graph first, so the quantiser sees Conv+bias rather than pieces
        quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantised), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(quantised, out)
