"""Dataset building: labelled sources -> normalised labels -> question-answer training rows, split per source.

See `build.py` for the pipeline and the output folder, `rows.py` for the official jsonl formats.
"""

from beholder.data.build import BuildConfig, FaceFilterConfig, SourceReport, build_dataset, load_build_config
from beholder.data.faces import FaceBox, FaceDetector, HaarFaceDetector, count_faces, load_detector
from beholder.data.mos import Rating, mean_opinion_scores
from beholder.data.qa import EXPERT_QUESTIONS, OVERALL_QUESTIONS, expert_answer, overall_answer, qa_row
from beholder.data.rows import (
    Label,
    TrainingRow,
    read_labels,
    read_training_rows,
    write_labels,
    write_training_rows,
)
from beholder.data.sources import SourceConfig, min_max
from beholder.data.split import split_labels

__all__ = [
    "EXPERT_QUESTIONS",
    "OVERALL_QUESTIONS",
    "BuildConfig",
    "FaceBox",
    "FaceDetector",
    "FaceFilterConfig",
    "HaarFaceDetector",
    "Label",
    "Rating",
    "SourceConfig",
    "SourceReport",
    "TrainingRow",
    "build_dataset",
    "count_faces",
    "expert_answer",
    "load_build_config",
    "load_detector",
    "mean_opinion_scores",
    "min_max",
    "overall_answer",
    "qa_row",
    "read_labels",
    "read_training_rows",
    "split_labels",
    "write_labels",
    "write_training_rows",
]
