"""`beholder review`: a local web page where a person reviews the best images of a score table, or picks the
better of two models' images, and every decision is saved as data."""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path
from urllib.parse import quote

from beholder.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE, describe
from beholder.errors import BeholderError, UsageError, require

DESCRIPTION = """\
Review images of a score table in the browser: a grid per --group-by group (e.g. per prompt), sorted by score,
each card with its thumbnail, score, level, heads and 12 dimensions; a large view with every column. Keyboard
first: arrows or j/k move, y keep, n reject, s star, u undo, Enter the large view. Rows are chosen as `beholder
select` chooses them (--min/--max, then --top-k or --top-fraction per group; none: every scored row).

Each decision is appended to the decisions file (default SCORES.decisions.jsonl) and forced to disk before the
page hears it was saved; run the same command again to resume. Deliver the result with
`beholder select SCORES --decisions FILE --keep keep,star --copy-to DIR`.

With two score tables (A B) and --group-by, an A/B review: the images of A and B for the same group, rank by
rank, side by side and blind (no paths, scores or model names); pick the better one or a tie. When the server
stops, the preference report (A's win rate with a Wilson interval, ties counted apart, a sign test, and how often
the person agreed with the scorer) is printed and written beside the picks file.

The page is served on 127.0.0.1 (--host to change) and shows only the images of the rows under review, by row
id: no request can name a file. Served elsewhere, give it a key (--api-key-file): a browser is then let in by
opening the address with ?key=KEY once (it keeps a session cookie), a script by sending `Authorization: Bearer
KEY`; nobody else gets anything. Stop it with Ctrl+C or SIGTERM."""

EPILOG = f"""\
exit status:
  {EXIT_OK}        done (the server was stopped by Ctrl+C or SIGTERM, or an export was written)
  {EXIT_FATAL}      could not run: a table that cannot be read, a decisions file another review holds, a taken port
  {EXIT_USAGE}        invalid arguments

examples:
  beholder review scores.parquet --group-by prompt --top-k 20
  beholder select scores.parquet --decisions scores.parquet.decisions.jsonl --keep keep,star --copy-to delivery/
  beholder review lora_a.parquet lora_b.parquet --group-by prompt --top-k 1
  beholder review scores.parquet --top-k 50 --static best.html
  beholder review scores.parquet --host 0.0.0.0 --api-key-file review.key   # then open http://HOST:8765/?key=KEY
  beholder review reports/hb/disagreements-model.parquet --group-by category --by disagreement"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "review", help="review the best images in the browser; decisions are saved as data",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scores", metavar="SCORES", help="score table (.jsonl, .csv, .parquet)")
    p.add_argument("other", metavar="B", nargs="?", help="a second score table: an A/B review of SCORES against B")
    criteria = p.add_argument_group("rows under review (as in `beholder select`)")
    criteria.add_argument("--group-by", metavar="COL", help="a grid (A/B: pairs) per value of COL, e.g. prompt")
    top = criteria.add_mutually_exclusive_group()
    top.add_argument("--top-k", type=int, metavar="K", help="the K best of each group")
    top.add_argument("--top-fraction", type=float, metavar="F", help="the best fraction F of each group")
    criteria.add_argument("--min", type=float, dest="min_score", metavar="X", help="rows scoring at least X")
    criteria.add_argument("--max", type=float, dest="max_score", metavar="X", help="rows scoring at most X")
    criteria.add_argument("--by", default="score", metavar="COL", help="column to rank on (default: score)")
    out = p.add_argument_group("decisions and exports")
    out.add_argument("--decisions", metavar="FILE", help="the decisions log (default: SCORES.decisions.jsonl; "
                     "A/B: SCORES.vs-B.picks.jsonl)")
    out.add_argument("--static", metavar="OUT.html", help="write a read-only, self-contained page and exit")
    out.add_argument("--export", metavar="OUT", help="write the decisions as a .csv/.jsonl/.parquet table and exit")
    out.add_argument("--summary", action="store_true", help="print the summary (A/B: the preference report) and exit")
    net = p.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (%(default)s: this machine only)")
    net.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (%(default)s)")
    net.add_argument("--open", action="store_true", help="open the page in the default browser")
    net.add_argument("--api-key-file", metavar="FILE", help="let in only browsers that open the page with ?key=KEY "
                     "and clients that send `Authorization: Bearer KEY`, KEY the contents of FILE")
    net.add_argument("--thumbnail-cache", metavar="DIR",
                     help="where thumbnails are kept (default: $BEHOLDER_CACHE/thumbnails or ~/.cache/beholder/...)")
    net.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from beholder.review import (
        Criteria, DecisionLog, PairSession, ReviewSession, ReviewState, ScoreTable, Thumbnails,
        default_thumbnail_cache, format_preference, format_summary, preference_report, read_state, review_summary,
        write_static,
    )  # fmt: skip

    criteria = Criteria(
        group_by=args.group_by, top_k=args.top_k, top_fraction=args.top_fraction, min_score=args.min_score,
        max_score=args.max_score, by=args.by,
    )  # fmt: skip
    tables = [ScoreTable.read(path, args.group_by) for path in filter(None, (args.scores, args.other))]
    session = PairSession(*tables, criteria) if args.other else ReviewSession(tables[0], criteria)
    decisions = Path(args.decisions or _default_decisions(args.scores, args.other))
    thumbnails = Thumbnails(args.thumbnail_cache or default_thumbnail_cache())

    def report(state) -> str:
        if isinstance(session, PairSession):
            made = preference_report(session, state)
            _write_report(decisions, made.to_dict())
            return format_preference(made) + f"\nwrote {_report_path(decisions)}"
        return format_summary(review_summary(session, state))

    if args.static or args.export or args.summary:
        state = read_state(decisions, session.mode) if decisions.exists() else ReviewState(session.mode)
        if args.static:
            unreadable = write_static(session, state, thumbnails, args.static)
            what = f"{len(session.pairs)} pairs" if isinstance(session, PairSession) else f"{len(session.rows)} images"
            note = f" ({unreadable} images could not be read)" if unreadable else ""
            print(f"wrote {args.static}: {what}{note}", file=sys.stderr)
        if args.export:
            from beholder.io import write_table

            write_table(args.export, session.decisions_table(state))
            print(f"wrote {args.export}", file=sys.stderr)
        if args.summary:
            print(report(state))
        return 0

    for module in ("fastapi", "uvicorn"):
        require(module, "serve", "beholder review")
    with DecisionLog(decisions, session.mode, start=session.start_event()) as log:
        _serve(args, session, log, thumbnails)
        print(report(log.state))
    return 0


def _serve(args: argparse.Namespace, session, log, thumbnails) -> None:
    from beholder.review.app import create_review_app
    from beholder.review.thumbnails import THUMB
    from beholder.serve.config import ServeConfig, is_loopback
    from beholder.serve.security import ApiKey
    from beholder.serve.server import listen, run as serve, url_of

    try:
        config = ServeConfig(host=args.host, port=args.port, log_level=args.log_level)
        key = ApiKey.from_file(args.api_key_file) if args.api_key_file else None
    except (OSError, ValueError) as exc:  # a port out of range; a key file that cannot be used
        raise UsageError(describe(exc)) from exc
    try:
        sock = listen(config.host, config.port)
    except OSError as exc:
        raise BeholderError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    if key is None and not is_loopback(config.host):
        print(f"warning: serving on {config.host} without --api-key-file: anyone who can reach it sees the images "
              "and can decide", file=sys.stderr)
    stop = threading.Event()
    warm = threading.Thread(target=thumbnails.warm, args=(session.images(), THUMB, stop), daemon=True)
    with sock:
        url = url_of(sock)
        app = create_review_app(session, log, thumbnails, host=config.host, key=key)
        what = f"{len(session.pairs)} pairs" if session.mode == "ab" else f"{session.n_images} images"

        def started() -> None:
            print(f"reviewing {what} at {url} (decisions: {log.path})", flush=True)
            if key is not None:
                print(f"a browser is let in at {url}/?key=KEY, KEY the contents of {args.api_key_file}", flush=True)
            warm.start()
            if args.open:
                webbrowser.open(url if key is None else f"{url}/?key={quote(key.text)}")

        drained = serve(app, config, sock, on_started=started)
    stop.set()
    if not drained:
        raise BeholderError("stopped by a second Ctrl-C before the requests in flight were answered")


def _default_decisions(scores: str, other: str | None) -> str:
    return f"{scores}.vs-{Path(other).name}.picks.jsonl" if other else f"{scores}.decisions.jsonl"


def _report_path(decisions: Path) -> Path:
    return decisions.with_name(decisions.name.removesuffix(".jsonl") + ".report.json")


def _write_report(decisions: Path, report: dict) -> None:
    from beholder.io import write_json_atomic
    from beholder.jsonsafe import nan_to_none

    write_json_atomic(_report_path(decisions), nan_to_none(report))


