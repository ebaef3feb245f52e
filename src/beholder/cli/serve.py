"""`beholder serve`: an HTTP scoring service that batches images across concurrent requests."""

from __future__ import annotations

import argparse
import sys

from beholder.cli.common import add_model_options, load_scorer
from beholder.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE, describe
from beholder.errors import BeholderError, UsageError, require

DESCRIPTION = """\
Serve a model over HTTP. POST images to /v1/score (multipart files, or JSON with base64 data) and get one
row per image in the columns of `beholder score` tables; images from concurrent requests are decoded in
parallel and scored together in batches. Also: POST /v1/annotate, GET /v1/model, /healthz, /readyz,
/metrics (Prometheus) and the API docs at /docs.

The server binds to 127.0.0.1 unless --host says otherwise, reads no paths unless --allow-root names a
folder, never fetches URLs, and with --api-key-file requires `Authorization: Bearer KEY`. SIGTERM or
Ctrl+C drains: no new connections, the requests in flight are answered, then it exits 0."""

EPILOG = f"""\
exit status:
  {EXIT_OK}        stopped by SIGTERM or Ctrl+C after answering every request in flight
  {EXIT_FATAL}      could not start (model not found, port taken, the serve extra not installed) or stopped
           by a second Ctrl+C before the requests in flight were answered
  {EXIT_USAGE}        invalid arguments

examples:
  beholder serve -m ./humanaesexpert-1b
  beholder serve -m ./model --device cuda --max-batch 32 --api-key-file key.txt --host 0.0.0.0
  curl -F image=@photo.jpg http://127.0.0.1:8000/v1/score"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from beholder.pipeline import default_decode_workers
    from beholder.serve.config import LOG_LEVELS, ServeConfig

    defaults = ServeConfig()
    p = subparsers.add_parser(
        "serve", help="serve a model over HTTP", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-m", "--model", required=True, help="model folder, preset or hub id")
    p.add_argument("--fast", action="store_true", help="requests that do not say score in one pass (default: full)")
    model = p.add_argument_group("model")
    add_model_options(model)
    model.add_argument(
        "--max-batch", dest="batch_size", type=int, metavar="N",
        help="most images per model call, gathered across requests (same as --batch-size)",
    )
    net = p.add_argument_group("network and limits")
    net.add_argument("--host", default=defaults.host, help="interface to bind (%(default)s: this machine only)")
    net.add_argument("--port", type=int, default=defaults.port, help="TCP port; 0 picks a free one (%(default)s)")
    net.add_argument(
        "--max-wait-ms", type=float, default=defaults.max_wait_ms, metavar="MS",
        help="a partial batch goes to the model after its oldest image waited this long (%(default)s)",
    )
    net.add_argument(
        "--decode-workers", "--workers", type=int, default=default_decode_workers(), metavar="N",
        help="threads decoding uploaded images (default: %(default)s, from the CPU count)",
    )
    net.add_argument("--max-queue", type=int, default=defaults.max_queue, metavar="N",
                     help="most images in progress; more gets 503 + Retry-After (%(default)s)")
    net.add_argument("--max-images", type=int, default=defaults.max_images, metavar="N",
                     help="most images per request (%(default)s)")
    net.add_argument("--max-request-mb", type=float, default=defaults.max_request_bytes / 2**20, metavar="MB",
                     help="most megabytes per request body (%(default)g)")
    net.add_argument("--request-timeout", type=float, default=defaults.request_timeout, metavar="S",
                     help="seconds before a request is answered 504 (%(default)g)")
    net.add_argument("--max-connections", type=int, default=defaults.max_connections, metavar="N",
                     help="most concurrent connections; more get 503 (%(default)s)")
    access = p.add_argument_group("access")
    access.add_argument("--api-key-file", metavar="FILE", help="require `Authorization: Bearer KEY`, KEY from FILE")
    access.add_argument("--allow-root", metavar="DIR", help="requests may name files inside DIR (default: no paths)")
    access.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser calls from ORIGIN (repeatable; default: CORS off)")
    access.add_argument("--log-level", choices=LOG_LEVELS, default=defaults.log_level)
    access.add_argument("--access-log", action="store_true", help="log one line per request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for module in ("fastapi", "uvicorn", "python_multipart", "prometheus_client"):
        require(module, "serve", "beholder serve")
    from beholder.serve.app import create_app
    from beholder.serve.config import ServeConfig, is_loopback
    from beholder.serve.security import AllowedRoot, ApiKey
    from beholder.serve.server import listen, run as serve, url_of

    try:
        config = ServeConfig(
            host=args.host, port=args.port, max_batch=args.batch_size, max_wait_ms=args.max_wait_ms,
            decode_workers=args.decode_workers, max_queue=args.max_queue, max_images=args.max_images,
            max_request_bytes=int(args.max_request_mb * 2**20), request_timeout=args.request_timeout,
            max_connections=args.max_connections, full=False if args.fast else None,
            cors_origins=tuple(args.cors_origin), log_level=args.log_level, access_log=args.access_log,
        )
        api_key = ApiKey.from_file(args.api_key_file) if args.api_key_file else None
        root = AllowedRoot(args.allow_root)
    except (OSError, ValueError) as exc:  # a limit out of range; a key file or root that cannot be used
        raise UsageError(describe(exc)) from exc
    try:
        sock = listen(config.host, config.port)
    except OSError as exc:
        raise BeholderError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    with sock:
        scorer = load_scorer(args)
        if not args.fast and not scorer.has_full:
            print(f"note: {args.model} has no expert/MetaVoter heads: single-pass scores only", file=sys.stderr)
        if api_key is None and not is_loopback(config.host):
            print(f"warning: serving on {config.host} without --api-key-file: anyone who can reach it may use it",
                  file=sys.stderr)
        url = url_of(sock)
        app = create_app(scorer, config, api_key=api_key, root=root)
        if not serve(app, config, sock, on_started=lambda: print(f"serving {scorer.config.name} at {url}", flush=True)):
            raise BeholderError("stopped by a second Ctrl-C before the requests in flight were answered")
    return 0
