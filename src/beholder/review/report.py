"""What a review's decisions add up to: the A/B preference report, and a review's summary; both measure how often
the person agreed with the scorer's ordering (scorer–human agreement).

A/B: the win rate of A is wins(A) / (wins(A) + wins(B)) with a Wilson score interval; ties prefer neither image, so
they are counted and reported, and left out of the win rate, its interval, the two-sided exact binomial (sign) test
and the agreement. A preferred model is named only when p < alpha. Agreement is the share of decisive picks, among
pairs the scorer ranks differently (`--by`, the score by default), where the person picked the higher-scored image.

Review: the agreement is, over every (kept or starred, rejected) pair of images in the same group, the share the
scorer ranks the kept one higher (equal scores count half): the AUC of the score at telling the person's keeps from
rejects. Those pairs share images, so they are not independent and no interval is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from beholder.review.decisions import ReviewState
from beholder.review.pairs import PairSession
from beholder.review.session import ReviewSession

TIES_NOTE = (
    "ties prefer neither image: they are counted, and left out of the win rate, its interval, the test and the "
    "agreement"
)


@dataclass(frozen=True)
class Proportion:
    count: int  # outcomes counted
    n: int  # out of
    rate: float  # count / n; NaN when n is 0
    ci_low: float  # Wilson score interval at the report's confidence; NaN when n is 0
    ci_high: float


def proportion(count: int, n: int, confidence: float) -> Proportion:
    from scipy.stats import binomtest

    if n == 0:
        return Proportion(0, 0, math.nan, math.nan, math.nan)
    ci = binomtest(count, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(count, n, count / n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class PreferenceReport:
    a: str  # the score tables
    b: str
    group_by: str
    by: str  # the column the scorer's ordering comes from
    pairs: int  # pairs on offer
    judged: int  # pairs with a pick
    unpaired_a: int  # selected images of A without a partner in B (groups B lacks, or fewer images there)
    unpaired_b: int
    wins_a: int
    wins_b: int
    ties: int
    win_rate_a: Proportion  # wins_a of the decisive picks (ties left out)
    p_value: float  # two-sided exact binomial test of a 0.5 win rate on the decisive picks
    preferred: str | None  # "A" | "B" when p < alpha, else None
    agreement: Proportion  # decisive picks of the image the scorer ranks higher, of those it ranks differently
    scorer_ties: int  # decisive picks the scorer cannot order (equal or missing scores), left out of the agreement
    scorer_win_rate_a: Proportion  # the scorer's own verdict on every pair it orders: how often it ranks A higher
    confidence: float
    alpha: float
    ties_note: str = TIES_NOTE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preference_report(
    session: PairSession, state: ReviewState, *, confidence: float = 0.95, alpha: float = 0.05
) -> PreferenceReport:
    from scipy.stats import binomtest

    by = session.criteria.by
    picks = session.picks(state)
    tally = {"A": 0, "B": 0, "tie": 0}
    agree = ordered = scorer_a = scorer_ordered = 0
    for pair in session.pairs:
        higher = _higher(*session.scores(pair))
        scorer_ordered += higher is not None
        scorer_a += higher == "A"
        if pair.id not in picks:
            continue
        pick = picks[pair.id]["pick"]
        tally[pick] += 1
        if pick != "tie" and higher is not None:
            ordered += 1
            agree += pick == higher
    decisive = tally["A"] + tally["B"]
    p_value = float(binomtest(tally["A"], decisive).pvalue) if decisive else math.nan
    preferred = None
    if decisive and p_value < alpha and tally["A"] != tally["B"]:
        preferred = "A" if tally["A"] > tally["B"] else "B"
    return PreferenceReport(
        a=session.a.scores.source,
        b=session.b.scores.source,
        group_by=session.criteria.group_by or "",
        by=by,
        pairs=len(session.pairs),
        judged=len(picks),
        unpaired_a=session.unpaired[0],
        unpaired_b=session.unpaired[1],
        wins_a=tally["A"],
        wins_b=tally["B"],
        ties=tally["tie"],
        win_rate_a=proportion(tally["A"], decisive, confidence),
        p_value=p_value,
        preferred=preferred,
        agreement=proportion(agree, ordered, confidence),
        scorer_ties=decisive - ordered,
        scorer_win_rate_a=proportion(scorer_a, scorer_ordered, confidence),
        confidence=confidence,
        alpha=alpha,
    )


def _higher(a: float | None, b: float | None) -> str | None:
    """Which image the scorer ranks higher: "A", "B", or None when it cannot say (equal or missing scores)."""
    if a is None or b is None or math.isnan(a) or math.isnan(b) or a == b:
        return None
    return "A" if a > b else "B"


def format_preference(r: PreferenceReport) -> str:
    pct = f"{r.confidence:.0%}"
    lines = [
        f"A: {r.a}",
        f"B: {r.b}",
        f"pairs: {r.pairs} (same {r.group_by}, rank by rank); judged {r.judged}: A {r.wins_a}, B {r.wins_b}, "
        f"tie {r.ties}",
    ]
    if r.unpaired_a or r.unpaired_b:
        lines.append(f"without a partner: A {r.unpaired_a}, B {r.unpaired_b} images")
    lines.append(f"win rate of A: {_rate(r.win_rate_a, pct)}; sign test p={_p(r.p_value)}")
    if r.preferred:
        lines.append(f"preferred: {r.preferred} (p < {r.alpha})")
    else:
        lines.append(f"preferred: neither (not significant at alpha={r.alpha})")
    lines.append(
        f"scorer-human agreement: {_rate(r.agreement, pct)} of decisive picks the scorer ({r.by}) orders "
        f"({r.scorer_ties} it cannot)"
    )
    lines.append(f"the scorer ranks A higher in {_rate(r.scorer_win_rate_a, pct)} of the pairs it orders")
    lines.append(f"note: {r.ties_note}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ReviewSummary:
    source: str
    rows: int  # images under review
    reviewed: int
    keep: int
    star: int
    reject: int
    by: str
    agreement: float  # AUC of the scorer at ranking kept/starred above rejected images of the same group; NaN if none
    agreement_pairs: int  # (kept or starred, rejected) pairs within groups it is computed over

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def review_summary(session: ReviewSession, state: ReviewState) -> ReviewSummary:
    decisions = session.decisions(state)
    tally = {"keep": 0, "star": 0, "reject": 0}
    for event in decisions.values():
        tally[event["decision"]] += 1
    scores, groups = session.rows.column(session.criteria.by), session.rows.groups
    kept: dict[Any, list[float]] = {}
    rejected: dict[Any, list[float]] = {}
    for i, event in decisions.items():
        if scores[i] is not None and not math.isnan(scores[i]):
            side = rejected if event["decision"] == "reject" else kept
            side.setdefault(groups[i], []).append(scores[i])
    wins = pairs = 0.0
    for group, good in kept.items():
        for bad in rejected.get(group, []):
            wins += sum(1.0 if g > bad else 0.5 if g == bad else 0.0 for g in good)
            pairs += len(good)
    return ReviewSummary(
        source=session.rows.scores.source,
        rows=len(session.rows),
        reviewed=len(decisions),
        **tally,
        by=session.criteria.by,
        agreement=wins / pairs if pairs else math.nan,
        agreement_pairs=int(pairs),
    )


def format_summary(s: ReviewSummary) -> str:
    lines = [
        f"{s.source}: reviewed {s.reviewed} of {s.rows} images: keep {s.keep}, star {s.star}, reject {s.reject}",
    ]
    if s.agreement_pairs:
        lines.append(
            f"scorer-human agreement: the scorer ({s.by}) ranks the kept image above the rejected one in "
            f"{s.agreement:.1%} of {s.agreement_pairs} such pairs within a group (equal scores count half)"
        )
    return "\n".join(lines)


def _rate(p: Proportion, pct: str) -> str:
    if not p.n:
        return "- (none)"
    return f"{p.rate:.1%} ({p.count}/{p.n}), {pct} CI [{p.ci_low:.1%}, {p.ci_high:.1%}]"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
