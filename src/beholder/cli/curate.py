"""`beholder select` and `beholder compare`: curation over score tables written by `beholder score`."""

from __future__ import annotations

import argparse
import math
import sys

import pyarrow as pa
import pyarrow.compute as pc

from beholder import jsonsafe
from beholder.cli.exits import EXIT_STATUS_HELP
from beholder.curate import LINK_MODES, Comparison, compare, materialise, select
from beholder.errors import UsageError
from beholder.io import paths_base, read_provenance, read_scores, write_table

SELECT_DESCRIPTION = """\
Keep the best images of a score table (.jsonl, .csv or .parquet from `beholder score`).

Rows with an error are never kept. --decisions keeps only the images a person kept in `beholder review`
(--keep: which decisions count); --min/--max filter next; then --top-k or --top-fraction keep the best of
what is left, within each --group-by group (e.g. per prompt) when given. Ties are broken by path.
The kept rows are written to -o OUT (same columns, with the source's provenance and the selection
recorded), and/or their images copied or linked into a folder (with --group-by, a subfolder per group);
with neither, kept paths are printed. Relative paths in the table are taken from the folder they were
relative to when scored (recorded in its provenance), else from the table's own folder."""

SELECT_EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder select scores.parquet --min 0.6 -o keep.parquet
  beholder select scores.parquet --top-k 4 --group-by prompt --copy-to best/
  beholder select scores.jsonl --top-fraction 0.1 --by dim_environment --symlink-to top10/
  beholder select unipercept.parquet --top-k 100 --by score_iqa -o sharpest.parquet
  beholder select scores.parquet --decisions scores.parquet.decisions.jsonl --keep keep,star --copy-to delivery/"""

COMPARE_DESCRIPTION = """\
Compare two score tables: mean, median, standard deviation and confidence interval of each set, the
difference A - B with its confidence interval, and a significance test, for the overall score and each
named score (score_<name>) and dimension both tables have. Higher scores win; a winner is named only when
p < alpha (named scores and dimensions use Holm-adjusted p-values).

The sets are paired when both tables hold the same unique --key values (the same images scored twice,
e.g. by two checkpoints): Wilcoxon signed-rank on the differences. Otherwise they are independent
samples (e.g. the outputs of two generators): Mann-Whitney U. Error rows are left out and counted."""

COMPARE_EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder compare lora_a.parquet lora_b.parquet
  beholder compare before.jsonl after.jsonl --key path --json > report.json"""


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_select(subparsers)
    _register_compare(subparsers)


def _register_select(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "select",
        help="keep the best images of a score table (threshold, top-k, per group)",
        description=SELECT_DESCRIPTION,
        epilog=SELECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scores", metavar="SCORES", help="score table: .jsonl, .csv or .parquet")
    criteria = p.add_argument_group("criteria (at least one)")
    criteria.add_argument("--min", type=float, dest="min_score", metavar="X", help="keep scores >= X")
    criteria.add_argument("--max", type=float, dest="max_score", metavar="X", help="keep scores <= X")
    top = criteria.add_mutually_exclusive_group()
    top.add_argument("--top-k", type=int, metavar="K", help="keep the K best (per group)")
    top.add_argument("--top-fraction", type=float, metavar="F", help="keep the best fraction F, 0 < F <= 1 (per group)")
    criteria.add_argument("--group-by", metavar="COL", help="rank within groups of this column, e.g. prompt")
    criteria.add_argument("--by", default="score", metavar="COL",
                          help="column to rank on: score, a named score score_<name>, dim_<key>, ... (default: score)")
    review = p.add_argument_group("a person's decisions (from `beholder review`)")
    review.add_argument("--decisions", metavar="FILE", help="keep only images decided as --keep in this decisions file")
    review.add_argument("--keep", default="keep,star", metavar="LIST",
                        help="the decisions that keep an image, comma-separated (default: keep,star)")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="OUT", help="write the kept rows: .jsonl, .csv or .parquet")
    to = out.add_mutually_exclusive_group()
    for mode in LINK_MODES:  # --copy-to, --symlink-to, --hardlink-to
        to.add_argument(f"--{mode}-to", metavar="DIR", help=f"{mode} the kept images into DIR")
    p.set_defaults(func=run_select)


def _register_compare(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two score tables with confidence intervals and a significance test",
        description=COMPARE_DESCRIPTION,
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", metavar="A", help="first score table")
    p.add_argument("b", metavar="B", help="second score table")
    p.add_argument(
        "--key", default="path", metavar="COL", help="column identifying an image across tables (default: path)"
    )
    pairing = p.add_mutually_exclusive_group()
    pairing.add_argument(
        "--paired", dest="paired", action="store_true", default=None, help="pair rows on --key (rows in both)"
    )
    pairing.add_argument("--unpaired", dest="paired", action="store_false", help="treat A and B as independent samples")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default: 0.95)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=run_compare)


def run_select(args: argparse.Namespace) -> int:
    if args.decisions is None and all(v is None for v in (args.min_score, args.max_score, args.top_k, args.top_fraction)):
        raise UsageError("give at least one of --min, --max, --top-k, --top-fraction, --decisions")
    exports = [(mode, getattr(args, f"{mode}_to")) for mode in LINK_MODES if getattr(args, f"{mode}_to")]
    mode, dest = exports[0] if exports else (None, None)
    table = read_scores(args.scores)
    if args.decisions:
        table = _decided(table, args.decisions, args.keep)
    selection = select(
        table,
        min_score=args.min_score,
        max_score=args.max_score,
        top_k=args.top_k,
        top_fraction=args.top_fraction,
        group_by=args.group_by,
        by=args.by,
    )
    provenance = read_provenance(args.scores) or {}
    if args.output:
        criteria = {
            k: getattr(args, k)
            for k in ("min_score", "max_score", "top_k", "top_fraction", "group_by", "by", "decisions", "keep")
        }
        record = {"selection": {"source": args.scores, **criteria, "kept": len(selection.table)}}
        write_table(args.output, selection.table, {**provenance, **record})
    if dest:
        materialise(selection.table, dest, mode=mode, base=paths_base(args.scores, provenance), group_by=args.group_by)
    if not args.output and not dest:
        for path in selection.table["path"].to_pylist():
            print(path)
    excluded = f" ({selection.excluded} rows without a score left out)" if selection.excluded else ""
    where = "".join(f"; {verb} {target}" for verb, target in (("wrote", args.output), (f"{mode} to", dest)) if target)
    print(f"kept {len(selection.table)} of {selection.considered} scored rows{excluded}{where}", file=sys.stderr)
    return 0


def _decided(table: pa.Table, decisions: str, keep: str) -> pa.Table:
    """The rows of `table` whose image the person decided as one of `keep` (comma-separated) in a review."""
    from beholder.review.decisions import DECISIONS, read_decisions

    wanted = {d.strip() for d in keep.split(",") if d.strip()}
    if not wanted or wanted - set(DECISIONS):
        raise UsageError(f"--keep takes some of {','.join(DECISIONS)}, not {keep!r}")
    kept = [path for path, decision in read_decisions(decisions).items() if decision in wanted]
    return table.filter(pc.is_in(table["path"], value_set=pa.array(kept, pa.string())))


def run_compare(args: argparse.Namespace) -> int:
    tables = [read_scores(path, string_columns=[args.key]) for path in (args.a, args.b)]
    result = compare(
        *tables,
        key=args.key,
        paired=args.paired,
        alpha=args.alpha,
        confidence=args.confidence,
        provenance=(read_provenance(args.a), read_provenance(args.b)),
    )
    if args.json:
        print(jsonsafe.dumps({"a": args.a, "b": args.b, **result.to_dict()}, indent=2))
    else:
        print(format_comparison(result, args.a, args.b))
    return 0


def format_comparison(c: Comparison, a: str, b: str) -> str:
    pct = f"{c.confidence:.0%}"
    lines = [f"A: {a}", f"B: {b}"]
    if c.excluded_a or c.excluded_b:
        lines.append(f"left out (no score): A {c.excluded_a}, B {c.excluded_b}")
    if c.paired:
        lines.append(f"paired on {c.key!r}: {c.n_pairs} images scored in both; Wilcoxon signed-rank test")
    else:
        lines.append("independent samples; Mann-Whitney U test")
    lines += [f"note: {note}" for note in c.notes]
    header = f"{'metric':<30} {'set':<3} {'n':>6} {'mean':>7} {pct + ' CI':>17} {'median':>7} {'std':>7}"
    lines += ["", header, "-" * len(header)]
    for m in c.metrics:
        for name, s in (("A", m.a), ("B", m.b)):
            label = m.metric if name == "A" else ""
            interval = _ci(s.ci_low, s.ci_high)
            lines.append(
                f"{label:<30} {name:<3} {s.n:>6} {_f(s.mean):>7} {interval:>17} {_f(s.median):>7} {_f(s.std):>7}"
            )
        p_text = f"p={_p(m.p_value)}" + (f" (Holm {_p(m.p_adjusted)})" if m.metric != "score" else "")
        verdict = f"{m.winner} wins" if m.winner else "no significant difference"
        lines.append(
            f"{'':<30} A-B {'':>6} {_f(m.diff):>7} {_ci(m.diff_ci_low, m.diff_ci_high):>17}  {p_text}: {verdict}"
        )
    overall = c.overall
    if overall.winner:
        lines += [
            "",
            f"winner: {overall.winner} (overall score {_f(overall.diff)} A-B, p={_p(overall.p_value)} < {c.alpha})",
        ]
    else:
        lines += [
            "",
            f"winner: none (overall score difference not significant at alpha={c.alpha}, p={_p(overall.p_value)})",
        ]
    return "\n".join(lines)


def _f(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3f}"


def _ci(lo: float, hi: float) -> str:
    return f"[{_f(lo)}, {_f(hi)}]"


def _p(p: float) -> str:
    return "nan" if math.isnan(p) else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"

