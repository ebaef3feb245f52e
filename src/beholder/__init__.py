"""beholder: image aesthetic assessment with vision-language models."""

__version__ = "0.1.0"

from beholder import testing  # noqa: E402  (public: tiny offline models for tests)
from beholder.results import ScoreResult  # noqa: E402
from beholder.scoring import Annotation, Scorer, load  # noqa: E402
from beholder.standard import DIMENSIONS, LEVELS  # noqa: E402

__all__ = ["DIMENSIONS", "LEVELS", "Annotation", "ScoreResult", "Scorer", "load", "testing", "__version__"]
