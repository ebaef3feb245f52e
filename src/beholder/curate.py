"""Curation over score tables: select the images to keep, copy or link them out, and compare two sets.
(scipy, for the comparison's tests, is imported when they run: `select` starts without it.)

Rows with an `error` (or no score) are never selected or compared; they are counted so a summary can say
how many were left out. Selection is deterministic: ties in score are broken by path.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beholder.errors import UsageError
from beholder.io import Located, key_from_text, key_to_text, locate, read_tar_members
from beholder.results import DIM_PREFIX, SCORE_PREFIX
from beholder.standard import DIMENSIONS

LINK_MODES = ("copy", "symlink", "hardlink")


def scored_rows(table: pa.Table, column: str = "score") -> tuple[pa.Table, int]:
    """(rows with a finite value in `column` and no error, number of rows left out)."""
    if column not in table.column_names:
        numeric = [n for n in table.column_names if pa.types.is_floating(table.schema.field(n).type)]
        raise UsageError(f"no column {column!r} in the score table (numeric columns: {', '.join(numeric)})")
    values = table[column]
    ok = pc.and_(pc.is_valid(values), pc.invert(pc.is_nan(values)))
    if "error" in table.column_names:
        ok = pc.and_(ok, pc.is_null(table["error"]))
    kept = table.filter(pc.fill_null(ok, False))
    return kept, len(table) - len(kept)


@dataclass(frozen=True)
class Selection:
    table: pa.Table  # kept rows, ordered by group (first appearance), score descending, path
    considered: int  # scored rows the criteria were applied to
    excluded: int  # rows left out because they had an error or no score


def select(
    table: pa.Table,
    *,
    min_score: float | None = None,
    max_score: float | None = None,
    top_k: int | None = None,
    top_fraction: float | None = None,
    group_by: str | None = None,
    by: str = "score",
) -> Selection:
    """Keep rows whose `by` value is within [min_score, max_score], then the best `top_k` or `top_fraction`
    of what is left, within each `group_by` group (e.g. per prompt) when given.

    top_fraction keeps ceil(fraction x group size) rows, so every non-empty group keeps at least one.
    """
    if top_k is not None and top_fraction is not None:
        raise UsageError("give top_k or top_fraction, not both")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise UsageError(f"top_fraction must be in (0, 1], got {top_fraction}")
    if group_by is not None and group_by not in table.column_names:
        raise UsageError(f"no column {group_by!r} to group by (columns: {', '.join(table.column_names)})")
    scored, excluded = scored_rows(table, by)
    considered = len(scored)
    if min_score is not None:
        scored = scored.filter(pc.greater_equal(scored[by], min_score))
    if max_score is not None:
        scored = scored.filter(pc.less_equal(scored[by], max_score))
    order, group_start, group_size = _rank_within_groups(scored, by, group_by)
    rank = np.arange(len(order)) - group_start
    if top_k is not None:
        keep = rank < top_k
    elif top_fraction is not None:
        keep = rank < np.ceil(np.round(top_fraction * group_size, 9))
    else:
        keep = np.ones(len(order), dtype=bool)
    return Selection(scored.take(pa.array(order[keep])), considered, excluded)


def _rank_within_groups(table: pa.Table, by: str, group_by: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order (group, value descending, path) and, per position in that order, its group's first
    position and size."""
    n = len(table)
    if group_by is None:
        codes = np.zeros(n, dtype=np.int64)
    else:  # codes number groups by first appearance; rows without a group value form one group, first
        encoded = pc.dictionary_encode(table[group_by].combine_chunks())
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    values = table[by].to_numpy()
    path_rank = pc.rank(table["path"], sort_keys="ascending", tiebreaker="first").to_numpy()
    order = np.lexsort((path_rank, -values, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if n else np.array([], np.int64)
    sizes = np.diff(np.r_[starts, n])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    return order, starts[group_of], sizes[group_of]


def materialise(
    table: pa.Table,
    dest: str | os.PathLike,
    *,
    mode: str = "copy",
    base: str | os.PathLike = ".",
    group_by: str | None = None,
) -> list[Path]:
    """Put the images of `table` (its `path` column, keys as `beholder score` writes them) in folder `dest` by
    copy, symlink or hardlink; with `group_by`, each group's images in a subfolder named by its value (rows
    without one in `_none`).

    Relative paths are taken relative to `base` (the folder they were relative to when scored). Files keep
    their names; a name already taken in its folder gets -1, -2, ... before its extension. Tar members are
    extracted, whatever the mode, since they cannot be linked. Refuses, before touching anything, when a source
    is missing or a target name already exists in `dest`.
    """
    if mode not in LINK_MODES:
        raise UsageError(f"mode must be one of {LINK_MODES}, got {mode!r}")
    keys = [key_from_text(k) for k in table["path"].to_pylist()]
    located = [locate(key, base) for key in keys]
    missing = [key for key, where in zip(keys, located) if not os.path.isfile(where.path)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} selected image(s) not found, e.g. {key_to_text(missing[0])} "
            f"(relative paths are taken from {base})"
        )
    dest = Path(dest)
    groups = table[group_by].to_pylist() if group_by else [None] * len(keys)
    folders = [dest / _folder_name(g) if group_by else dest for g in groups]
    names = [_file_name(where) for where in located]
    targets = [folder / name for folder, name in zip(folders, _unique_names(folders, names), strict=True)]
    taken = [t for t in targets if os.path.lexists(t)]
    if taken:
        raise FileExistsError(f"{len(taken)} file(s) already in {dest}, e.g. {taken[0]}: use an empty folder")
    members: dict[str, dict[str, Path]] = defaultdict(dict)  # shard -> member key -> target
    for folder in dict.fromkeys(folders):
        folder.mkdir(parents=True, exist_ok=True)
    for where, target in zip(located, targets, strict=True):
        if where.member is not None:
            members[where.path][where.member] = target
        elif mode == "copy":
            shutil.copy2(where.path, target)
        elif mode == "symlink":
            target.symlink_to(os.path.abspath(where.path))
        else:
            os.link(where.path, target)
    for shard, wanted in members.items():
        for member, _, data in read_tar_members(shard, wanted):
            wanted[member].write_bytes(data)
    return targets


def _file_name(where: Located) -> str:
    """The image's own file name; a tar member's `#2` (a name repeated in its shard) is not part of it."""
    if where.member is None:
        return os.path.basename(where.path)
    return os.path.basename(re.sub(r"#\d+$", "", where.member))


def _folder_name(group: Any) -> str:
    """A group's value as one folder name."""
    if group is None:
        return "_none"
    name = re.sub(r"[/\\\0]", "_", str(group))
    return name if name not in ("", ".", "..") else f"_{name}"


def _unique_names(folders: Sequence[Path], names: Sequence[str]) -> list[str]:
    used: set[tuple[Path, str]] = set()
    unique = []
    for folder, name in zip(folders, names, strict=True):
        stem, suffix = os.path.splitext(name)
        candidate, n = name, 0
        while (folder, candidate) in used:
            n += 1
            candidate = f"{stem}-{n}{suffix}"
        used.add((folder, candidate))
        unique.append(candidate)
    return unique


# ---------------------------------------------------------------------------------------------------------------
# compare


@dataclass(frozen=True)
class SetStats:
    n: int
    mean: float
    median: float
    std: float  # sample standard deviation (ddof=1)
    ci_low: float  # t-based confidence interval of the mean
    ci_high: float


@dataclass(frozen=True)
class MetricComparison:
    metric: str  # "score", a score_<name> or a dim_<key> column
    a: SetStats
    b: SetStats
    diff: float  # mean(A) - mean(B); for paired sets, the mean of the per-image differences
    diff_ci_low: float
    diff_ci_high: float
    test: str  # "wilcoxon" (paired) | "mann-whitney" (unpaired)
    statistic: float
    p_value: float
    p_adjusted: float  # Holm-adjusted over the named scores and dimensions; the same as p_value for the overall score
    winner: str | None  # "A" | "B" | None when the difference is not significant


@dataclass(frozen=True)
class Comparison:
    paired: bool
    key: str  # column rows were paired on
    n_pairs: int  # rows scored in both tables (paired only)
    excluded_a: int  # rows without a usable score, left out
    excluded_b: int
    alpha: float
    confidence: float
    metrics: list[MetricComparison]
    notes: list[str]

    @property
    def overall(self) -> MetricComparison:
        return self.metrics[0]

    @property
    def winner(self) -> str | None:
        return self.overall.winner

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "winner": self.winner}


def compare(
    a: pa.Table,
    b: pa.Table,
    *,
    key: str = "path",
    paired: bool | None = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    provenance: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
) -> Comparison:
    """Compare the scores of two tables, overall, per named score (score_<name>) and per dimension, and say which set
    wins.

    paired: None decides from the data: paired when both tables hold the same set of unique `key`s (the same
        images scored twice, e.g. by two checkpoints or before/after an edit), else unpaired. Paired sets are
        tested with the Wilcoxon signed-rank test on rows scored in both; unpaired with Mann-Whitney U.
    A winner is named only when p < alpha; higher scores are better.
    """
    notes = _provenance_notes(*provenance)
    a_ok, excluded_a = scored_rows(a)
    b_ok, excluded_b = scored_rows(b)
    if paired is None:
        paired = _same_unique_keys(a, b, key)
    elif paired and not (_unique(a, key) and _unique(b, key)):
        raise UsageError(f"cannot pair on {key!r}: its values are not unique in both tables")
    if paired:
        a_ok, b_ok = _align(a_ok, b_ok, key)
    named = [c for c in a.column_names if c.startswith(SCORE_PREFIX) and c in b.column_names]
    dims = [DIM_PREFIX + k for k in DIMENSIONS if DIM_PREFIX + k in a.column_names and DIM_PREFIX + k in b.column_names]
    metrics = ["score", *named, *dims]
    results = [_compare_metric(m, a_ok, b_ok, paired, alpha, confidence) for m in metrics]
    results = results[:1] + _holm(results[1:], alpha)
    return Comparison(
        paired, key, len(a_ok) if paired else 0, excluded_a, excluded_b, alpha, confidence, results, notes
    )


def _unique(table: pa.Table, key: str) -> bool:
    return key in table.column_names and pc.count_distinct(table[key]).as_py() == len(table)


def _same_unique_keys(a: pa.Table, b: pa.Table, key: str) -> bool:
    if not (_unique(a, key) and _unique(b, key)) or len(a) != len(b):
        return False
    return bool(pc.all(pc.is_in(a[key], value_set=b[key].combine_chunks())).as_py())


def _align(a: pa.Table, b: pa.Table, key: str) -> tuple[pa.Table, pa.Table]:
    """Rows of a and b whose key is in both, in the same order."""
    a = a.filter(pc.is_in(a[key], value_set=b[key].combine_chunks())).sort_by(key)
    b = b.filter(pc.is_in(b[key], value_set=a[key].combine_chunks())).sort_by(key)
    return a, b


def _compare_metric(
    metric: str, a: pa.Table, b: pa.Table, paired: bool, alpha: float, confidence: float
) -> MetricComparison:
    x = a[metric].to_numpy(zero_copy_only=False).astype(float)
    y = b[metric].to_numpy(zero_copy_only=False).astype(float)
    if paired:
        both = ~(np.isnan(x) | np.isnan(y))
        x, y = x[both], y[both]
    else:
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    sa, sb = _set_stats(x, confidence), _set_stats(y, confidence)
    if paired:
        d = x - y
        diff, (lo, hi) = _mean_ci(d, confidence)
        test, statistic, p, direction = ("wilcoxon", *_wilcoxon(d))
    else:
        diff, (lo, hi) = sa.mean - sb.mean, _welch_ci(x, y, confidence)
        test, statistic, p, direction = ("mann-whitney", *_mann_whitney(x, y))
    winner = ("A" if direction > 0 else "B") if p < alpha and direction != 0 else None
    return MetricComparison(metric, sa, sb, diff, lo, hi, test, statistic, p, p, winner)


def _set_stats(x: np.ndarray, confidence: float) -> SetStats:
    mean, (lo, hi) = _mean_ci(x, confidence)
    median = float(np.median(x)) if len(x) else math.nan
    std = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
    return SetStats(len(x), mean, median, std, lo, hi)


def _mean_ci(x: np.ndarray, confidence: float) -> tuple[float, tuple[float, float]]:
    from scipy import stats
    if len(x) == 0:
        return math.nan, (math.nan, math.nan)
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, (math.nan, math.nan)
    half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x))
    return mean, (mean - half, mean + half)


def _welch_ci(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, float]:
    from scipy import stats
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan
    va, vb = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if se == 0:
        return (float(np.mean(x) - np.mean(y)),) * 2
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = stats.t.ppf((1 + confidence) / 2, df) * se
    diff = float(np.mean(x) - np.mean(y))
    return diff - half, diff + half


def _wilcoxon(d: np.ndarray) -> tuple[float, float, int]:
    """(statistic, p, direction): direction +1 when positive differences dominate the signed ranks."""
    from scipy import stats
    d = d[d != 0]
    if len(d) == 0:
        return math.nan, 1.0, 0  # identical scores: no difference to test
    ranks = stats.rankdata(np.abs(d))
    direction = int(np.sign(ranks[d > 0].sum() - ranks[d < 0].sum()))
    result = stats.wilcoxon(d)
    return float(result.statistic), float(result.pvalue), direction


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """(U of A, p, direction): direction +1 when A tends to score higher than B."""
    from scipy import stats
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, 0
    result = stats.mannwhitneyu(x, y, alternative="two-sided")
    return float(result.statistic), float(result.pvalue), int(np.sign(result.statistic - len(x) * len(y) / 2))


def _holm(results: list[MetricComparison], alpha: float) -> list[MetricComparison]:
    """Holm-Bonferroni over the named-score and dimension tests, so many looks at the data do not inflate false
    wins."""
    tested = sorted((r.p_value, i) for i, r in enumerate(results) if not math.isnan(r.p_value))
    adjusted = [math.nan] * len(results)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return [
        replace(r, p_adjusted=p, winner=r.winner if p < alpha else None) for r, p in zip(results, adjusted, strict=True)
    ]


def _provenance_notes(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    if not a or not b:
        return []
    notes = []
    if a.get("weights_sha256") != b.get("weights_sha256"):
        if a.get("model") == b.get("model"):
            weights = " vs ".join(str(p.get("weights_sha256"))[:12] for p in (a, b))
            notes.append(f"A and B were scored by different weights of {a.get('model')} (sha256 {weights}...)")
        else:
            notes.append(f"A and B were scored by different models ({a.get('model')} vs {b.get('model')})")
    if a.get("scale") != b.get("scale"):
        notes.append(f"A and B scores are on different scales ({a.get('scale')} vs {b.get('scale')})")
    if a.get("mode") != b.get("mode"):
        notes.append(f"A was scored in {a.get('mode')} mode and B in {b.get('mode')} mode")
    return notes
