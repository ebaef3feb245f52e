"""`beholder data build`: labelled sources in, a training dataset folder out.

Per source: read -> drop rows whose image is missing -> single-face filter (where asked); then across sources:
drop every copy of an image (same content) after its first, so no image lands in both train and test; then
per source: normalise (overall sources: min-max over what is left; raters: MOS) -> seeded per-source split.
A source left with no image, or with one score only, is an error naming the source and its counts. Written to
the output folder,
each file replaced whole, so a rerun gives the same files and never duplicates a row:
    train_labels.jsonl, test_labels.jsonl   official label rows
    train.jsonl, test.jsonl                 official training rows (paraphrased question, level answer, scores)
    report.json                             counts per source: read, dropped by reason, kept, train, test
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from beholder.data.faces import count_faces, load_detector
from beholder.data.qa import qa_row
from beholder.data.rows import Label, write_labels, write_training_rows
from beholder.data.sources import RawSource, SourceConfig, read_source, to_labels
from beholder.data.split import split_labels
from beholder.errors import BeholderError
from beholder.images import ImageError, load_image
from beholder.io import write_json_atomic
from beholder.typedconfig import ConfigError, positive

T = TypeVar("T")


@dataclass(frozen=True)
class FaceFilterConfig:
    detector: str = "haar"  # "haar" (OpenCV cascade) or "package.module:factory" for a pluggable detector
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments for the detector's constructor
    min_score: float = 0.0  # boxes with a confidence below this are not counted (detectors that give one)
    workers: int = 4  # threads decoding and detecting (OpenCV releases the GIL)

    def __post_init__(self) -> None:
        positive(self, "workers")


@dataclass(frozen=True)
class BuildConfig:
    sources: tuple[SourceConfig, ...]  # the labelled sources, each normalised and split on its own
    output: str = "dataset"  # output folder (relative paths: to the config file's folder)
    seed: int = 0  # seeds the split and the choice of question paraphrase
    test_fraction: float = 0.1  # share of each source held out for test
    min_raters: int = 9  # raters sources: fewest ratings a dimension may have for its image to be kept
    faces: FaceFilterConfig = field(default_factory=FaceFilterConfig)  # the single-face filter's detector

    def __post_init__(self) -> None:
        positive(self, "min_raters")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError(f"test_fraction: a share of each source in [0, 1), got {self.test_fraction!r}")


@dataclass
class SourceReport:
    name: str
    kind: str
    read: int  # images in the source (raters sources: distinct images); read = kept + sum(dropped)
    dropped: dict[str, int]  # reason -> images dropped: missing_image, unreadable, no_face, several_faces,
    #                           too_few_raters, duplicate (the same content as an image kept earlier)
    kept: int
    train: int = 0
    test: int = 0


def build_dataset(config: BuildConfig, root: str | Path = ".", *, progress: bool = False) -> list[SourceReport]:
    """Build the dataset folder of `config`; relative paths in it are resolved against `root`. `progress` shows
    bars (on stderr) for the long steps: the face filter and hashing the images."""
    if len({source.name for source in config.sources}) != len(config.sources):
        raise ValueError("source names must be unique: normalisation and the reports are per source")
    root = Path(root)
    sources, read = [], []
    for source in config.sources:
        raw = read_source(source, root, config.min_raters)
        read.append(len(raw.items) + sum(raw.dropped.values()))  # raters sources drop thin images while reading
        _drop_missing(raw)
        if source.single_face:
            _filter_single_face(raw, config.faces, progress)
        sources.append(raw)
    _drop_duplicates(sources, config.faces.workers, progress)
    labels, reports, keys = [], [], []
    for raw, count in zip(sources, read):
        kept = _normalised(raw, count)
        labels += kept
        keys.append({label.key for label in kept})
        reports.append(SourceReport(raw.config.name, raw.config.kind, count, dict(raw.dropped), len(kept)))
    train, test = split_labels(labels, config.test_fraction, config.seed)
    for report, mine in zip(reports, keys):
        report.train = sum(1 for label in train if label.key in mine)
        report.test = sum(1 for label in test if label.key in mine)
    _write(root / config.output, train, test, reports, config.seed)
    return reports


def _drop_missing(raw: RawSource) -> None:
    present = [item for item in raw.items if os.path.isfile(item.image)]
    if len(present) < len(raw.items):
        raw.dropped["missing_image"] += len(raw.items) - len(present)
    raw.items = present


def _filter_single_face(raw: RawSource, faces: FaceFilterConfig, progress: bool) -> None:
    """Keep the items whose image has exactly one face; count the others by reason."""
    local = threading.local()

    def faces_in(path: str) -> int | None:
        if not hasattr(local, "detector"):  # one detector per thread: cascades are not promised thread-safe
            local.detector = load_detector(faces.detector, faces.options)
        try:
            return count_faces(local.detector, load_image(path), faces.min_score)
        except ImageError:
            return None

    with ThreadPoolExecutor(max(1, faces.workers)) as pool:
        found = pool.map(faces_in, [item.image for item in raw.items])
        counts = list(_bar(found, len(raw.items), f"faces in {raw.config.name}", progress))
    kept = []
    for item, n in zip(raw.items, counts):
        if n == 1:
            kept.append(item)
        else:
            raw.dropped["unreadable" if n is None else "no_face" if n == 0 else "several_faces"] += 1
    raw.items = kept


def _drop_duplicates(sources: list[RawSource], workers: int, progress: bool) -> None:
    """Keep the first of images with the same content (sources in config order, rows in table order): a copy
    in another source, or under another name, would otherwise be split on its own and could land in test while
    its twin trains."""
    paths = [item.image for raw in sources for item in raw.items]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        digests = iter(list(_bar(pool.map(_sha256, paths), len(paths), "hashing images", progress)))
    seen: set[str] = set()
    for raw in sources:
        kept = []
        for item in raw.items:
            digest = next(digests)
            if digest in seen:
                raw.dropped["duplicate"] += 1
            else:
                seen.add(digest)
                kept.append(item)
        raw.items = kept


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalised(raw: RawSource, read: int) -> list[Label]:
    """The source's labels on the standard; a source the filters emptied, or left without two different
    scores to min-max, is an error that says which and why."""
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(raw.dropped.items()) if n) or "none"
    where = f"source {raw.config.name!r}: {len(raw.items)} of {read} images left (dropped: {dropped})"
    if not raw.items:
        raise BeholderError(f"{where}; check its labels, images and filters")
    try:
        return to_labels(raw)
    except ValueError as exc:
        raise BeholderError(f"{where}; {exc}") from None


def _bar(values: Iterable[T], total: int, what: str, show: bool) -> Iterable[T]:
    return tqdm(values, total=total, desc=what, unit="img", disable=not show, file=sys.stderr, dynamic_ncols=True)


def _write(out: Path, train: list[Label], test: list[Label], reports: list[SourceReport], seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / "train_labels.jsonl", train)
    write_labels(out / "test_labels.jsonl", test)
    write_training_rows(out / "train.jsonl", (qa_row(label, seed) for label in train))
    write_training_rows(out / "test.jsonl", (qa_row(label, seed) for label in test))
    write_json_atomic(out / "report.json", [asdict(r) for r in reports])


def load_build_config(path: str | Path, overrides: list[str] = ()) -> BuildConfig:
    from beholder import typedconfig

    return typedconfig.load(BuildConfig, path, overrides)
