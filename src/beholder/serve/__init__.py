"""beholder's HTTP service (FastAPI + uvicorn), and the web stack other beholder web apps build on.

  config.py    ServeConfig: network, batching and limit settings
  web.py       create_web_app: FastAPI with metrics, body limit, optional CORS, /healthz /readyz /metrics  (shared)
  security.py  ApiKey (constant-time bearer check), AllowedRoot (symlink-resolved path containment)   (shared)
  limits.py    BodyLimitMiddleware: 413 while the body streams in                                     (shared)
  metrics.py   HttpMetrics + MetricsMiddleware (shared); ScoringMetrics (batches, queue, images)
  server.py    listen, run: uvicorn until SIGTERM/Ctrl+C, then drain                                 (shared)
  batching.py  BatchEngine: cross-request batches by key on one model thread, bounded admission
  inputs.py    a request's images: multipart uploads, JSON base64 or paths under the allowed root
  service.py   ScoringService: decode pool -> BatchEngine -> result rows; warm-up, annotation
  app.py       create_app: the /v1 scoring API on the web stack
  launch.py    ServerProcess, BeholderProcess: `beholder serve` (or `review`) as a child process on a free port

Nothing here is imported by `import beholder`; the FastAPI stack is the `serve` extra.
"""
