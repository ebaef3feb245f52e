"""What an image costs between the two Ray stages: float32 pixels (normalised in the decode task) against uint8
views (normalised where the model runs), the form `beholder score --engine ray` carries.

For photo-like JPEGs (1024x768, quality 90) at 1 view (448 squash) and 13 views (12 tiles + thumbnail), in one
process, interleaved (A B, B A, ...), one thread:
  bytes       the pixels column of `prepare_batch`'s Arrow table per image, and the whole table serialised (IPC)
  decode      the decode task's CPU time per image: Scorer.prepare (finished) against Scorer.prepare(raw=True)
  to model    the actor's CPU time per image to make model inputs: Backbone.model_inputs of finished visuals
              (a cast to the model's dtype) against raw ones, which a model on the CPU finishes on the host
              (normalise, then cast): what a CPU actor pays. A GPU actor uploads raw views as they are and
              normalises them on the GPU; no GPU is measured here
The model is a random one with InternVL2-1B's preprocessing (448-pixel tiles); its weights play no part.

    python benchmarks/bench_transfer.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import torch
from machine import describe, load_average  # sibling modules: the script's folder is on sys.path when run

from beholder.distributed.stages import PIXELS, _prepared
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image


def ipc_bytes(table: pa.Table) -> int:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().size


def cpu_ms_per_image(run, n: int) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) * 1e3 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8, help="photos per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="the model's dtype")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {describe()}\nload average before: {load_average()}")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.photos):
            paths.append(str(Path(folder) / f"photo{i}.jpg"))
            make_image(1024, 768, seed=i).save(paths[-1], "JPEG", quality=90)
        print("| views | carried as | pixels per image | Arrow IPC per image | decode task, CPU ms/image "
              "| to model inputs, ms/image |\n|---|---|---|---|---|---|")
        for tiles in (1, 12):
            model = build_model("internvl", seed=0, size="tiny-448", max_tiles=tiles)
            model.hf_model.to(getattr(torch, args.dtype))
            scorer, backbone = Scorer(model), model.backbone
            views = len(scorer.prepare(paths[0]).visual.pixels)
            forms = {"float32": False, "uint8": True}  # form carried -> Scorer.prepare(raw=...)
            carried = _prepared(scorer, pa.table({"path": paths}), "path", "bytes")  # the stage's own table: uint8
            tables = {"uint8": carried, "float32": _with_float32_pixels(carried, scorer, paths)}
            visuals = {form: [scorer.prepare(p, raw=raw).visual for p in paths] for form, raw in forms.items()}
            times: dict[str, dict[str, list[float]]] = {form: {"decode": [], "model": []} for form in forms}
            for round_ in range(args.repeats):
                for form in list(forms) if round_ % 2 == 0 else list(reversed(forms)):
                    raw = forms[form]
                    times[form]["decode"].append(cpu_ms_per_image(
                        lambda: [scorer.prepare(p, raw=raw) for p in paths], len(paths)))
                    times[form]["model"].append(cpu_ms_per_image(
                        lambda: [backbone.model_inputs([v]) for v in visuals[form]], len(paths)))
            for form, table in tables.items():
                pixels = sum(len(b) for b in table[PIXELS].to_pylist()) / len(paths)
                cells = [f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]" for v in times[form].values()]
                print(f"| {views} | {form} | {pixels / 1e6:.2f} MB | {ipc_bytes(table) / len(paths) / 1e6:.2f} MB | "
                      + " | ".join(cells) + " |")
    print(f"load average after: {load_average()}")


def _with_float32_pixels(table: pa.Table, scorer: Scorer, paths: list[str]) -> pa.Table:
    """The stage table as it was when decode tasks normalised: float32 pixels in place of the uint8 views."""
    pixels = pa.array([scorer.prepare(p).visual.pixels.tobytes() for p in paths], pa.large_binary())
    return table.set_column(table.schema.get_field_index(PIXELS), PIXELS, pixels)


if __name__ == "__main__":
    main()
