"""`beholder serve` as a user runs it: a real server in a subprocess on a free loopback port, the tiny model.

One server (API key, --allow-root, small limits, a 50 ms batching window) is shared by most tests; a second
one with room for two requests at a time, whose partial batches wait 0.6 s, takes the overload test and then
the SIGTERM test, which ends it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from image_files import encode, huge_png, write_broken, write_photos
from prometheus_client.parser import text_string_to_metric_families

from beholder.cli import main
from beholder.client import Client, RemoteScorer
from beholder.io import read_scores, read_table
from beholder.serve.batching import BatchEngine, Overloaded
from beholder.serve.launch import ServerProcess
from beholder.serve.server import listen

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
KEY = "test-key-0123456789"
ORIGIN = "https://app.example"
MAX_IMAGES = 8
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The folder the shared server may read, with a symlink inside it and one pointing out of it."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(encode(1, "png"))
    (root / "inside-link.png").symlink_to(root / "sub" / "a.png")
    (base / "secret.png").write_bytes(encode(2, "png"))
    (root / "escape.png").symlink_to(base / "secret.png")
    (root / "escape-dir").symlink_to(base)
    return root


@pytest.fixture(scope="module")
def server(tiny_internvl, root, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "key.txt"
    key_file.write_text(KEY + "\n")
    options = ["--api-key-file", key_file, "--allow-root", root, "--max-batch", "8", "--max-wait-ms", "50",
               "--max-images", MAX_IMAGES, "--max-request-mb", "1", "--decode-workers", "2", "--log-level", "warning",
               "--cors-origin", ORIGIN]
    process = ServerProcess(tiny_internvl, *map(str, options), env=ENV)
    process.key_file = key_file
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield client


def post_files(http: httpx.Client, files: list[tuple[str, bytes]], **params) -> httpx.Response:
    return http.post("/v1/score", files=[("image", f) for f in files], params=params)


def assert_same(row: dict, local, name: str | None = None) -> None:
    """A served row equals the local ScoreResult for the same image."""
    assert row["error"] is None and local.error is None, (row["error"], local.error)
    assert row["path"] == name
    assert abs(row["score"] - local.score) <= TOLERANCE and row["level"] == local.level
    assert {k[5:]: v for k, v in row.items() if k.startswith("head_")}.keys() == local.heads.keys()
    for head, value in local.heads.items():
        assert abs(row[f"head_{head}"] - value) <= TOLERANCE
    for dim, value in local.dimensions.items():
        assert abs(row[f"dim_{dim}"] - value) <= TOLERANCE
    assert sum(k.startswith("dim_") for k in row) == len(local.dimensions)


def metric(http: httpx.Client, name: str) -> dict[tuple, float]:
    """{label values: value} of every sample named `name` on /metrics."""
    text = http.get("/metrics").text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def concurrently(n: int, request) -> list:
    """request(i) for i in range(n), from n threads released at the same moment; the answers in order."""
    start, answers = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        start.wait()
        answers[i] = request(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


# ---- the batching engine, on its own ------------------------------------------------------------------------------


def test_engine_batches_by_key_flushes_on_size_or_wait_and_drains():
    calls: list[tuple] = []

    def run(key, items):
        calls.append((key, list(items)))
        return [(key, item) for item in items]

    engine = BatchEngine(run, max_batch=4, max_wait=0.5, capacity=8)
    engine.start()
    with engine.admit(8):
        with pytest.raises(Overloaded) as refused:
            with engine.admit(1):
                pass
        assert refused.value.retry_after >= 1
        started = time.monotonic()
        full = [engine.submit("a", i) for i in range(4)]  # a full batch runs at once
        assert [f.result(1) for f in full] == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]
        assert time.monotonic() - started < 0.4
        partial = [engine.submit("b", 0), engine.submit("c", 0), engine.submit("b", 1)]
        dropped = engine.submit("b", 2)
        assert dropped.cancel()  # its request gave up: never run
        assert [f.result(1) for f in partial] == [("b", 0), ("c", 0), ("b", 1)]
        assert time.monotonic() - started >= 0.5  # partial batches waited for max_wait
        late = engine.submit("d", 0)
        engine_closed = threading.Thread(target=engine.close)
        engine_closed.start()  # draining: the queued item runs without waiting for max_wait
        assert late.result(0.4) == ("d", 0)
    engine_closed.join(1)
    assert not engine_closed.is_alive()
    assert sorted(calls) == [("a", [0, 1, 2, 3]), ("b", [0, 1]), ("c", [0]), ("d", [0])]
    with pytest.raises(Overloaded):
        with engine.admit(1):
            pass


# ---- scores ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("full", [True, False])
def test_scores_equal_local_scoring(http, internvl_scorer, full):
    sizes = [(64, 48), (200, 60), (40, 130), (120, 120)]  # 1 to 4 tiles + thumbnail: several batch keys
    images = [encode(i, "png", size) for i, size in enumerate(sizes)]
    local = internvl_scorer.score(images, full=full)
    response = post_files(http, [(f"img{i}.png", data) for i, data in enumerate(images)], full=str(full).lower())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == internvl_scorer.config.name and body["scale"] == [0.0, 1.0]
    assert body["mode"] == ("full" if full else "fast")
    for i, (row, expected) in enumerate(zip(body["results"], local, strict=True)):
        assert_same(row, expected, f"img{i}.png")
    # the same images as JSON with base64 data
    payload = {"images": [{"data": base64.b64encode(data).decode(), "name": f"b{i}"} for i, data in enumerate(images)]}
    rows = http.post("/v1/score", json=payload, params={"full": str(full).lower()}).json()["results"]
    for i, (row, expected) in enumerate(zip(rows, local, strict=True)):
        assert_same(row, expected, f"b{i}")


def test_bad_images_are_error_rows_of_a_good_request(http, internvl_scorer, tmp_path):
    broken = {kind: path.read_bytes() for kind, path in write_broken(tmp_path).items()}  # zero, truncated, text, huge
    good = encode(7, "jpg")
    files = [("good.jpg", good)] + [(f"{kind}.jpg", data) for kind, data in broken.items()]
    response = post_files(http, files)
    assert response.status_code == 200, response.text
    rows = {row["path"]: row for row in response.json()["results"]}
    assert_same(rows["good.jpg"], internvl_scorer.score(good)[0], "good.jpg")
    assert rows["zero.jpg"]["error"].startswith("ImageError: empty input")
    assert rows["truncated.jpg"]["error"].startswith("ImageError:")
    assert rows["text.jpg"]["error"].startswith("ImageError: cannot decode")
    assert rows["huge.jpg"]["error"].startswith("ImageError: image too large")  # the decompression-bomb guard
    assert all(rows[f"{kind}.jpg"]["score"] is None for kind in broken)
    assert metric(http, "beholder_errors_total")[(("kind", "image_decode"),)] >= 4


def test_concurrent_clients_get_their_own_rows_in_shared_batches(http, internvl_scorer):
    images = [encode(100 + i, "png", (64, 48)) for i in range(16)]  # one shape: one batch key
    local = internvl_scorer.score(images)

    def batches() -> tuple[float, float]:
        """(model calls, calls with more than one image) so far, from the batch-size histogram."""
        count = metric(http, "beholder_batch_size_count")[()]
        return count, count - metric(http, "beholder_batch_size_bucket")[(("le", "1.0"),)]

    calls_before, larger_before = batches()
    answers = concurrently(16, lambda i: post_files(http, [(f"client{i}.png", images[i])]))
    for i, response in enumerate(answers):
        assert response.status_code == 200, response.text
        [row] = response.json()["results"]
        assert_same(row, local[i], f"client{i}.png")
    calls, larger = batches()
    assert calls - calls_before < 16  # 16 one-image requests in fewer model calls
    assert larger - larger_before >= 1  # the histogram shows batches larger than 1, made of several requests


def test_python_client_and_annotation(server, internvl_scorer, tmp_path):
    paths = write_photos(tmp_path, 3)
    with Client(server.url, api_key=KEY) as client:
        info = client.model()
        assert info["name"] == internvl_scorer.config.name and info["scale"] == [0.0, 1.0] and info["full"]
        assert info["weights_sha256"] == internvl_scorer.provenance["weights_sha256"]
        assert "source" not in info["provenance"]  # the server's own paths stay on the server
        results = client.score([*paths, tmp_path / "missing.jpg"])
        for path, result, expected in zip(paths, results, internvl_scorer.score(paths)):
            assert result.path == str(path) and abs(result.score - expected.score) <= TOLERANCE
        assert results[-1].error.startswith("ImageError: cannot open") and results[-1].score is None
        [note] = client.annotate([paths[0]], max_new_tokens=12)
        [expected] = internvl_scorer.annotate([paths[0]], max_new_tokens=12)
        assert note["error"] is None and note["text"] == expected.text and note["path"] == str(paths[0])


# ---- refusals ----------------------------------------------------------------------------------------------------


def test_every_bad_request_gets_its_status_and_the_server_stays_up(server, http):
    image = encode(3, "png")
    b64 = base64.b64encode(image).decode()
    anonymous = httpx.Client(base_url=server.url, timeout=30)
    cases = {
        "no key": (anonymous.post("/v1/score", files={"image": ("a.png", image)}), 401),
        "wrong key": (anonymous.post("/v1/score", files={"image": ("a.png", image)},
                                     headers={"Authorization": "Bearer nope"}), 401),
        "metrics need the key": (anonymous.get("/metrics"), 401),
        "text body": (http.post("/v1/score", content=b"hello", headers={"Content-Type": "text/plain"}), 415),
        "no content type": (http.post("/v1/score", content=b"hello"), 415),
        "broken json": (http.post("/v1/score", content=b"{", headers={"Content-Type": "application/json"}), 400),
        "no images": (http.post("/v1/score", json={"images": []}), 400),
        "bad base64": (http.post("/v1/score", json={"images": [{"data": "not base64!"}]}), 400),
        "data and path": (http.post("/v1/score", json={"images": [{"data": b64, "path": "sub/a.png"}]}), 400),
        "a url": (http.post("/v1/score", json={"images": [{"url": "http://example.com/a.jpg"}]}), 400),
        "form field": (http.post("/v1/score", data={"full": "true"}, files={"image": ("a.png", image)}), 400),
        "bad option": (post_files(http, [("a.png", image)], full="maybe"), 400),
        "too many files": (post_files(http, [(f"{i}.png", image) for i in range(MAX_IMAGES + 1)]), 413),
        "too many json": (http.post("/v1/score", json={"images": [{"data": b64}] * (MAX_IMAGES + 1)}), 413),
        "body too large": (post_files(http, [("big.png", os.urandom(1_100_000))]), 413),
        "timeout": (post_files(http, [(f"{i}.png", image) for i in range(MAX_IMAGES)], timeout="0.001"), 504),
    }
    anonymous.close()
    for name, (response, status) in cases.items():
        assert response.status_code == status, (name, response.status_code, response.text)
        assert "detail" in response.json(), name
    assert cases["no key"][0].headers["WWW-Authenticate"] == "Bearer"
    errors = {labels[0][1]: value for labels, value in metric(http, "beholder_errors_total").items()}
    for kind in ("unauthorized", "unsupported_media_type", "bad_request", "too_large", "timeout"):
        assert errors[kind] >= 1, kind
    assert http.get("/healthz").json() == {"status": "ok"}
    assert post_files(http, [("a.png", image)]).json()["results"][0]["error"] is None


def test_paths_only_inside_the_allowed_root(http, root):
    def by_path(path: str) -> httpx.Response:
        return http.post("/v1/score", json={"images": [{"path": path}]})

    upload = post_files(http, [("a.png", (root / "sub" / "a.png").read_bytes())]).json()["results"][0]
    for inside in ("sub/a.png", "inside-link.png", str(root / "sub" / "a.png"), "sub/../sub/a.png"):
        response = by_path(inside)
        assert response.status_code == 200, (inside, response.text)
        [row] = response.json()["results"]
        assert row["path"] == inside and row["score"] == upload["score"]
    [missing] = by_path("sub/missing.png").json()["results"]
    assert missing["error"] == "ImageError: cannot open sub/missing.png: No such file or directory"
    for outside in ("../secret.png", "sub/../../secret.png", "escape.png", "escape-dir/secret.png",
                    str(root.parent / "secret.png"), "/etc/passwd", ""):
        response = by_path(outside)
        assert response.status_code == 403, (outside, response.text)
        assert "outside the folder" in response.json()["detail"] or outside == ""


def test_cors_only_for_the_origins_asked_for(server, small_server):
    def preflight(url: str, origin: str) -> httpx.Response:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return httpx.options(url + "/v1/score", headers=headers)

    assert preflight(server.url, ORIGIN).headers.get("access-control-allow-origin") == ORIGIN
    assert "access-control-allow-origin" not in preflight(server.url, "https://other.example").headers
    assert "access-control-allow-origin" not in preflight(small_server.url, ORIGIN).headers  # CORS off by default


# ---- the CLI through a server --------------------------------------------------------------------------------------


def test_score_cli_through_the_server_writes_the_local_table(server, tiny_internvl, tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", 5)
    (tmp_path / "photos" / "text.jpg").write_bytes(b"not an image")
    (tmp_path / "photos" / "empty.png").write_bytes(b"")
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    assert main(["score", str(tmp_path / "photos"), "-m", str(tiny_internvl), "-o", str(local), "--no-progress"]) == 2
    status = main(["score", str(tmp_path / "photos"), "--server", server.url, "--api-key-file",
                   str(server.key_file), "-o", str(remote), "--no-progress", "--decode-workers", "4"])
    assert status == 2, capsys.readouterr().err
    local_rows, remote_rows = read_scores(local).to_pylist(), read_scores(remote).to_pylist()
    assert read_scores(remote).column_names == read_scores(local).column_names
    assert [r["path"] for r in remote_rows] == [r["path"] for r in local_rows]
    assert len(remote_rows) == len(photos) + 2
    for mine, theirs in zip(remote_rows, local_rows):
        assert (mine["error"] is None) == (theirs["error"] is None), (mine, theirs)
        if mine["error"]:
            assert mine["error"].split(":")[0] == theirs["error"].split(":")[0] == "ImageError"
            continue
        assert mine["level"] == theirs["level"]
        for column, value in theirs.items():
            if isinstance(value, float):
                assert abs(mine[column] - value) <= TOLERANCE, column
    provenance = json.loads(Path(f"{remote}.provenance.json").read_text())
    expected = json.loads(Path(f"{local}.provenance.json").read_text())
    assert provenance["source"] == server.url and provenance["weights_sha256"] == expected["weights_sha256"]
    assert provenance["mode"] == "full" and provenance["preprocess"] == expected["preprocess"]


def test_annotate_cli_through_the_server_writes_the_local_table(server, tiny_internvl, tmp_path, capsys):
    write_photos(tmp_path / "photos", 3)
    (tmp_path / "photos" / "text.jpg").write_bytes(b"not an image")
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    common = ["annotate", str(tmp_path / "photos"), "--max-new-tokens", "12", "--no-progress"]
    assert main([*common, "-m", str(tiny_internvl), "-o", str(local)]) == 1
    via_server = [*common, "--server", server.url, "--api-key-file", str(server.key_file)]
    assert main([*via_server, "-o", str(remote), "--decode-workers", "3"]) == 1, capsys.readouterr().err
    local_rows, remote_rows = read_table(local).to_pylist(), read_table(remote).to_pylist()
    assert [r["path"] for r in remote_rows] == [r["path"] for r in local_rows] and len(remote_rows) == 4
    for mine, theirs in zip(remote_rows, local_rows):
        if theirs["error"]:
            assert mine["error"].split(":")[0] == theirs["error"].split(":")[0] == "ImageError"
        else:
            assert mine == theirs  # the same greedy text and the levels read from it
    provenance = json.loads(Path(f"{remote}.provenance.json").read_text())
    assert provenance["source"] == server.url and provenance["generation"] == {"do_sample": False, "max_new_tokens": 12}
    capsys.readouterr()
    assert main([*via_server, "--sample"]) == 2
    assert "--sample: a server annotates greedily" in capsys.readouterr().err


def test_a_served_image_tower_is_refused_for_annotation_before_any_image_is_sent():
    class LaionServer:  # what /v1/model says of a CLIP + MLP predictor
        url = "http://127.0.0.1:1"

        def model(self) -> dict:
            return {"name": "laion-aesthetic-v2", "full": False, "annotates": False, "scale": [1.0, 10.0],
                    "provenance": {}}

    assert RemoteScorer(LaionServer()).annotate_tokens is None  # scoring it is fine
    with pytest.raises(ValueError, match="'laion-aesthetic-v2' has no language model to annotate with"):
        RemoteScorer(LaionServer(), annotate_tokens=160)


def test_score_cli_with_an_unreachable_server_says_so(tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(encode(0, "png"))
    assert main(["score", str(image), "--server", "http://127.0.0.1:9"]) == 101
    err = capsys.readouterr().err
    assert "beholder score: error: http://127.0.0.1:9/v1/model: ConnectError" in err and "Traceback" not in err
    assert main(["score", str(image), "--server", "http://127.0.0.1:9", "--dtype", "bfloat16"]) == 2
    assert "--dtype: the server's settings" in capsys.readouterr().err


def test_the_listening_socket_gives_connections_tcp_nodelay():
    """asyncio sets TCP_NODELAY only on connections of IPPROTO_TCP sockets; without it every keep-alive
    response waits ~40 ms for a delayed ACK."""
    with listen("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0


def test_serve_refuses_bad_settings_before_loading_the_model(tiny_internvl, tmp_path, capsys):
    model = ["serve", "-m", str(tiny_internvl), "--port", "0"]
    assert main([*model, "--api-key-file", str(tmp_path / "missing.txt")]) == 2
    (tmp_path / "empty.txt").write_text("\n")
    assert main([*model, "--api-key-file", str(tmp_path / "empty.txt")]) == 2
    assert main([*model, "--allow-root", str(tmp_path / "missing")]) == 2
    assert main([*model, "--max-images", "10", "--max-queue", "5"]) == 2
    assert main(["serve", "-m", str(tmp_path / "no-model"), "--port", "0"]) == 101
    err = capsys.readouterr().err
    assert "missing.txt" in err and "API key is empty" in err and "cannot load model" in err and "Traceback" not in err


def test_serve_without_the_extra_says_what_to_install(monkeypatch, capsys, tiny_internvl):
    for name in [m for m in sys.modules if m.startswith("beholder.serve.") or m == "fastapi"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now fails as if not installed
    assert main(["serve", "-m", str(tiny_internvl)]) == 101
    assert "pip install 'beholder[serve]'" in capsys.readouterr().err


# ---- overload and shutdown, on a server of their own -----------------------------------------------------------


@pytest.fixture(scope="module")
def small_server(tiny_internvl):
    """Room for 16 images (two requests of eight_images()) at a time; a partial batch waits 0.6 s, so every
    request of eight_images() takes that long."""
    options = ["--max-batch", "8", "--max-wait-ms", "600", "--max-queue", "16", "--max-images", "8",
               "--decode-workers", "1", "--log-level", "warning"]
    process = ServerProcess(tiny_internvl, *options, env=ENV)
    yield process
    process.stop()


def eight_images() -> list[tuple[str, tuple[str, bytes]]]:
    """1 to 6 tiles wide, 6 batch keys: two such requests fill no batch (8 images), so none runs before 0.6 s."""
    widths = (64, 120, 180, 240, 300, 360, 64, 120)
    return [("image", (f"{i}.png", encode(200 + i, "png", (w, 60)))) for i, w in enumerate(widths)]


def test_overload_is_503_with_retry_after_not_a_crash(small_server):
    with httpx.Client(base_url=small_server.url, timeout=60) as http:
        answers = concurrently(12, lambda i: http.post("/v1/score", files=eight_images()))
        statuses = sorted(response.status_code for response in answers)
        assert set(statuses) == {200, 503}, statuses
        for response in answers:
            if response.status_code == 503:
                assert int(response.headers["Retry-After"]) >= 1
            else:
                assert all(row["error"] is None for row in response.json()["results"])
        assert http.get("/readyz").status_code == 200
    with Client(small_server.url) as client:  # the client waits as asked and retries
        results = concurrently(6, lambda i: client.score([encode(i, "png")]))
    assert all(result.error is None for [result] in results)


def test_sigterm_answers_requests_in_flight_then_exits_0(small_server):
    """Ends small_server: it must be the last test to use it."""
    with httpx.Client(base_url=small_server.url, timeout=60) as http:
        answers: list = [None, None]

        def send(i: int) -> None:
            answers[i] = http.post("/v1/score", files=eight_images())

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for _ in range(100):  # until both requests are admitted (they then take 0.6 s more)
            if metric(http, "beholder_images_in_progress")[()] == 16:
                break
            time.sleep(0.005)
        assert metric(http, "beholder_images_in_progress")[()] == 16
        small_server.terminate()
        for thread in threads:
            thread.join()
    assert small_server.process.wait(60) == 0, small_server.output()
    for response in answers:
        assert response.status_code == 200
        assert [row["error"] for row in response.json()["results"]] == [None] * 8
    with pytest.raises(httpx.ConnectError):
        httpx.get(small_server.url + "/healthz")
