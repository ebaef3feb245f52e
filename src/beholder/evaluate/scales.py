"""Score scales: every score says its scale, and evaluation maps both sides onto [0, 1] by the stated scales.

A model's native scale (HumanAesExpert 0–1, ArtiMuse/ERNIE-Image-Aes 0–100, Q-Align 1–5) rarely matches a
benchmark's (ERIA-1K 1–10, HumanBeauty 0–1). Correlations do not care, but MAE, bias and rating levels do, so
they are computed on `normalise(x, scale)` of both sides, and the report states which scales were used and
where each came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNIT: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Scale:
    """A closed score range and where it came from (shown in reports: "--pred-scale", "model preset", …)."""

    lo: float
    hi: float
    source: str

    def __post_init__(self) -> None:
        if not self.lo < self.hi:
            raise ValueError(f"a scale needs lo < hi, got ({self.lo}, {self.hi})")

    @property
    def bounds(self) -> tuple[float, float]:
        return self.lo, self.hi

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Map values linearly so that lo -> 0 and hi -> 1 (values outside the scale land outside [0, 1])."""
        return (np.asarray(values, dtype=float) - self.lo) / (self.hi - self.lo)

    def count_outside(self, values: np.ndarray, rel_tol: float = 1e-6) -> int:
        """How many finite values fall outside [lo, hi] (beyond a relative tolerance for rounding)."""
        v = np.asarray(values, dtype=float)
        slack = rel_tol * (self.hi - self.lo)
        return int(np.sum(np.isfinite(v) & ((v < self.lo - slack) | (v > self.hi + slack))))

    def to_dict(self) -> dict[str, object]:
        return {"lo": self.lo, "hi": self.hi, "source": self.source}


def parse_scale(text: str, source: str) -> Scale:
    """Parse "lo,hi" (as given to --pred-scale / --gt-scale) into a Scale."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"a scale is written 'lo,hi' (e.g. '0,1' or '1,10'), got {text!r}") from None
    return Scale(lo, hi, source)
