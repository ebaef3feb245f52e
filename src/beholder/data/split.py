"""A seeded train/test split made per source, reproducible and order-independent.

Within each source, labels are ranked by a hash of (seed, label key); int((1 - fraction) * n) go to train and
the rest to test, as the official script counts (train = int(0.9 * n): a 5-image source gives 1 test image). So
each source keeps its share of the test set (the paper splits 90/10 per source), the same inputs give the same
split whatever their order or the machine, and a label keeps its side when others are added. The official
script shuffles without a seed and appends to its output on every run; here a rerun rewrites.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from beholder.data.rows import Label, stable_hash


def split_labels(labels: Iterable[Label], test_fraction: float, seed: int) -> tuple[list[Label], list[Label]]:
    """(train, test), each in input order. Two labels with one key in one source are an error (a duplicate
    would land on both sides or twice on one)."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    labels = list(labels)
    by_source: dict[str, list[int]] = defaultdict(list)
    keys: set[str] = set()
    for i, label in enumerate(labels):
        if label.key in keys:
            raise ValueError(f"duplicate image {label.key!r}: each image must appear once per source")
        keys.add(label.key)
        by_source[label.source].append(i)
    test: set[int] = set()
    for indices in by_source.values():
        ranked = sorted(indices, key=lambda i: (stable_hash(seed, labels[i].key), labels[i].key))
        n_train = int((1.0 - test_fraction) * len(ranked))  # the official count; test gets the rest
        test.update(ranked[: len(ranked) - n_train])
    return [x for i, x in enumerate(labels) if i not in test], [x for i, x in enumerate(labels) if i in test]
