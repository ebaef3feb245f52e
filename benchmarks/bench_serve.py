"""`beholder serve` under load: throughput and latency with cross-request batching on and off.

Two servers run the same random-weight model on loopback, identical but for --max-batch (N vs 1). A closed
loop of C clients (asyncio + httpx in this process), each sending one image per request and the next as soon
as the answer comes, measures requests per second and the p50 / p99 latency at C = 1, 4, 16, 64. The two
servers are measured alternately (A B, then B A, ...) at every level, `--repeats` times; the figures are
medians over repeats with the range, and the batched / unbatched ratios are taken within each repeat. Every
answer is checked (no error rows) and the scores of the two servers are compared, so speed is not bought
with other results. Loopback only; bounded by `--requests` and `--seconds` per measurement.

    python benchmarks/bench_serve.py --size small --repeats 3 --requests 96 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import httpx
import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

from beholder.model.folder import save_model
from beholder.serve.launch import ServerProcess
from beholder.testing import SIZES, build_model, make_image


@dataclass
class Measure:
    throughput: float  # requests (= images) per second
    p50: float  # latency, seconds
    p99: float
    scores: dict[int, float]  # image index -> score


async def _load(url: str, images: list[bytes], clients: int, requests: int, seconds: float) -> Measure:
    """`clients` closed-loop clients sharing `requests` requests (one image each), stopped after `seconds`."""
    latencies: list[float] = []
    scores: dict[int, float] = {}
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def client() -> None:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                response = await http.post("/v1/score", files={"image": (f"{i}.jpg", images[i % len(images)])})
                latencies.append(time.perf_counter() - sent)
                response.raise_for_status()
                [row] = response.json()["results"]
                if row["error"]:
                    raise RuntimeError(f"error row: {row['error']}")
                scores[i % len(images)] = row["score"]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Measure(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        scores,
    )


def _jpeg(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    make_image(width, height, seed=seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _median_range(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="backbone shape (random weights)")
    parser.add_argument("--max-batch", type=int, default=16, help="the batching server's --max-batch")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="the batching server's --max-wait-ms")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=128, help="most requests per measurement")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="A B / B A rounds per level")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per server")
    parser.add_argument("--fast", action="store_true", help="one-pass scoring instead of full")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench-serve-")
    model = build_model("internvl", seed=0, size=args.size, max_tiles=1)
    save_model(model, folder)
    side = model.config.preprocess.image_size
    images = [_jpeg(side * 2, side * 3 // 2, seed=i) for i in range(64)]  # one tile each after resizing
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    common = ["--max-wait-ms", str(args.max_wait_ms), "--max-queue", "1024", "--log-level", "warning",
              *(["--fast"] if args.fast else [])]
    load_start = os.getloadavg()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores | torch {torch.__version__}, {args.threads} threads per "
          f"server | load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    print(f"model: random {args.size} InternVL, 1 tile per image, {'fast' if args.fast else 'full'} scoring; "
          f"one {side * 2}x{side * 3 // 2} JPEG per request; <= {args.requests} requests or {args.seconds:g} s "
          f"per measurement; {args.repeats} repeats, servers alternated")
    servers = {
        "batched": ServerProcess(folder, "--max-batch", str(args.max_batch), *common, env=env),
        "unbatched": ServerProcess(folder, "--max-batch", "1", *common, env=env),
    }
    runs: dict[tuple[str, int], list[Measure]] = {(name, c): [] for name in servers for c in args.clients}
    try:
        for repeat in range(args.repeats):
            for clients in args.clients:
                order = list(servers) if repeat % 2 == 0 else list(servers)[::-1]
                for name in order:
                    measure = asyncio.run(
                        _load(servers[name].url, images, clients, max(args.requests, clients), args.seconds)
                    )
                    runs[name, clients].append(measure)
    finally:
        for server in servers.values():
            server.stop()
    load_end = os.getloadavg()

    print(f"\nbatched: --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}; unbatched: --max-batch 1")
    print("| clients | batched img/s | unbatched img/s | ratio | batched p50 / p99 ms | unbatched p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for clients in args.clients:
        on, off = runs["batched", clients], runs["unbatched", clients]
        ratios = [a.throughput / b.throughput for a, b in zip(on, off)]
        latency = {
            name: f"{statistics.median(m.p50 for m in ms) * 1e3:.0f} / {statistics.median(m.p99 for m in ms) * 1e3:.0f}"
            for name, ms in (("on", on), ("off", off))
        }
        print(f"| {clients} | {_median_range([m.throughput for m in on], '.1f')} | "
              f"{_median_range([m.throughput for m in off], '.1f')} | **×{_median_range(ratios, '.2f')}** | "
              f"{latency['on']} | {latency['off']} |")
    scores = {name: {i: s for (n, _), ms in runs.items() if n == name for m in ms for i, s in m.scores.items()}
              for name in servers}
    shared = scores["batched"].keys() & scores["unbatched"].keys()
    diff = max(abs(scores["batched"][i] - scores["unbatched"][i]) for i in shared)
    print(f"\nmax |batched - unbatched| score over {len(shared)} images: {diff:.1e}")
    print(f"load average at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")


if __name__ == "__main__":
    main()
