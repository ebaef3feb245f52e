"""Face detection behind one small interface, and the single-face filter of HumanBeauty-58K.

A detector is any object with `detect(image) -> list[FaceBox]`. The default is OpenCV's frontal-face Haar
cascade (shipped with opencv-python 4.x; 5.x dropped the cascades, hence the pin below 5). A RetinaFace-style
detector plugs in by name, "package.module:factory", where factory(**options) returns a detector; boxes with
a confidence below the filter's `min_score` do not count.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from beholder.errors import require


@dataclass(frozen=True)
class FaceBox:
    x: int  # left, in pixels of the image given to detect()
    y: int  # top
    width: int
    height: int
    score: float | None = None  # detector confidence; None for detectors without one (Haar)


class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image."""


class HaarFaceDetector:
    """OpenCV's Viola-Jones cascade. Fast on a CPU, frontal faces only; images are downscaled to `max_side`
    first (detection cost grows with pixels, and faces smaller than `min_size_fraction` are ignored anyway)."""

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.05,
        max_side: int = 640,
    ):
        cv2 = require("cv2", "train", "the Haar face detector")
        path = cascade if "/" in cascade else cv2.data.haarcascades + cascade
        self._classifier = cv2.CascadeClassifier(path)
        if self._classifier.empty():
            raise ValueError(f"cannot load the Haar cascade {path!r} (opencv-python 5 ships none: pin opencv < 5)")
        self._cv2 = cv2
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction
        self.max_side = max_side

    def detect(self, image: Image.Image) -> list[FaceBox]:
        scale = min(1.0, self.max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        grey = self._cv2.cvtColor(np.asarray(image.convert("RGB")), self._cv2.COLOR_RGB2GRAY)
        side = max(12, round(self.min_size_fraction * min(grey.shape)))
        found = self._classifier.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        return [FaceBox(*(round(float(v) / scale) for v in box)) for box in found]


def load_detector(name: str = "haar", options: Mapping[str, Any] | None = None) -> FaceDetector:
    """"haar", or "package.module:factory" for a pluggable detector; `options` go to its constructor."""
    options = dict(options or {})
    if name == "haar":
        return HaarFaceDetector(**options)
    module, sep, attribute = name.partition(":")
    if not sep:
        raise ValueError(f"face detector {name!r}: use 'haar' or 'package.module:factory'")
    factory = getattr(importlib.import_module(module), attribute)
    detector = factory(**options)
    if not callable(getattr(detector, "detect", None)):
        raise TypeError(f"face detector {name!r} has no detect(image) method")
    return detector


def count_faces(detector: FaceDetector, image: Image.Image, min_score: float = 0.0) -> int:
    """Faces found, not counting boxes whose confidence is below `min_score`."""
    return sum(1 for box in detector.detect(image) if box.score is None or box.score >= min_score)
