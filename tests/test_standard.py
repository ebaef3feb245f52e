import pytest

import beholder
from beholder import standard


def test_dimension_keys_and_official_order():
    assert beholder.DIMENSIONS == (
        "facial_brightness", "facial_feature_clarity", "facial_skin_tone", "facial_structure",
        "facial_contour_clarity", "facial_aesthetic", "outfit", "body_shape", "looks", "environment",
        "general_appearance_aesthetic", "overall",
    )
    assert [d.index for d in standard.STANDARD] == list(range(12))
    assert standard.STANDARD[10].name == "General Appearance Aesthetic Score"
    assert standard.STANDARD[11].name == "Comprehensive Aesthetic Score"


def test_hierarchy_covers_every_leaf_once():
    children = [c for kids in standard.HIERARCHY.values() for c in kids]
    parents = set(standard.HIERARCHY)
    assert sorted(c for c in children if c not in parents) == sorted(standard.LEAVES)
    assert standard.HIERARCHY["overall"] == ("environment", "facial_aesthetic", "general_appearance_aesthetic")


@pytest.mark.parametrize(
    "score, level",
    [(0.0, "bad"), (0.1999, "bad"), (0.2, "poor"), (0.3999, "poor"), (0.4, "fair"), (0.5999, "fair"),
     (0.6, "good"), (0.7999, "good"), (0.8, "excellent"), (1.0, "excellent"), (-0.5, "bad"), (1.7, "excellent")],
)
def test_levels_use_inclusive_lower_bounds(score, level):
    assert standard.score_to_level(score) == level


def test_level_helpers():
    assert standard.level_index(" Good ") == 3
    assert standard.level_to_score("bad") == pytest.approx(0.1)
    assert standard.score_to_level(standard.level_to_score("excellent")) == "excellent"
    with pytest.raises(ValueError, match="unknown level"):
        standard.level_index("superb")
    with pytest.raises(ValueError, match="NaN"):
        standard.score_to_level(float("nan"))


def test_official_list_round_trip():
    values = [i / 11 for i in range(12)]
    scores = standard.scores_from_official(values)
    assert scores["environment"] == values[9] and scores["overall"] == values[11]
    assert standard.scores_to_official(scores) == values
    with pytest.raises(ValueError, match="expected 12"):
        standard.scores_from_official(values[:11])
