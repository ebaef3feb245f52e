"""Question-answer rows: scores become rating-level text answers to one of the paraphrased questions.

Questions (HumanAesExpert): five paraphrases for the overall score, and the same five asking "from 12 different
dimensions" for the 12-dimension labels. Answers: "The aesthetics of the human image is {level}" and twelve
lines "{i}. {Name} : {level}". The paraphrase of a row is chosen by a hash of (seed, the label's key, question
kind), so a rebuild gives the same rows wherever the files live and whatever the order of the input.
"""

from __future__ import annotations

from beholder.data.rows import Label, TrainingRow, stable_hash
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, score_to_level

IMAGE_PLACEHOLDER = "<image>\n"  # the official query form: the image, a newline, the question
OVERALL_QUESTIONS: tuple[str, ...] = (
    "Can you evaluate the aesthetics of the human image?",
    "Rate the aesthetics of this human picture.",
    "How is the aesthetics of this human image?",
    "Can you rate the aesthetics of this human picture?",
    "Please evaluate the aesthetics of the human image.",
)
# The same questions ending "... from 12 different dimensions" before their final punctuation.
EXPERT_QUESTIONS: tuple[str, ...] = tuple(q[:-1] + " from 12 different dimensions" + q[-1] for q in OVERALL_QUESTIONS)
OVERALL_ANSWER = "The aesthetics of the human image is {level}"


def overall_answer(score: float) -> str:
    return OVERALL_ANSWER.format(level=score_to_level(score))


def expert_answer(scores: tuple[float, ...]) -> str:
    """Twelve lines "{i}. {Name} : {level}" in official order (no trailing newline, as the official rows)."""
    pairs = enumerate(zip(DIMENSIONS, scores), 1)
    return "\n".join(f"{i}. {DISPLAY_NAMES[key]} : {score_to_level(score)}" for i, (key, score) in pairs)


def question(seed: int, key: str, expert: bool) -> str:
    """A stable choice among the five paraphrases for one image (by its key) and question kind."""
    questions = EXPERT_QUESTIONS if expert else OVERALL_QUESTIONS
    return questions[stable_hash(seed, key, int(expert)) % len(questions)]


def query_question(query: str) -> str:
    """The question of a query ("<image>\\n" + question -> question); "" stays ""."""
    return query.removeprefix(IMAGE_PLACEHOLDER).strip()


def qa_row(label: Label, seed: int) -> TrainingRow:
    """The training row of one label: a paraphrased question and its level answer, with the scores."""
    if label.is_expert:
        text, scores = expert_answer(label.scores), label.scores
    else:
        text, scores = overall_answer(label.overall), (0.0,) * (len(DIMENSIONS) - 1) + (label.overall,)
    query = IMAGE_PLACEHOLDER + question(seed, label.key, label.is_expert)
    return TrainingRow(query, text, label.image, tuple(scores), label.is_expert)
