"""`beholder review` without a browser: the decisions log, the session, A/B pairs, the reports, thumbnails, the API
(through an in-process client), the exports and `select --decisions`."""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from pathlib import Path

import pytest
from image_files import encode, write_shard
from PIL import Image
from review_data import score_table

from beholder.cli import main
from beholder.curate import select
from beholder.errors import UsageError
from beholder.io import Located, read_scores, read_table
from beholder.review import (
    Criteria, DecisionLog, PairSession, ReviewSession, ReviewState, ScoreTable, Thumbnails, preference_report,
    read_decisions, read_state, review_summary,
)  # fmt: skip
from beholder.review.decisions import DecisionLogError
from beholder.review.report import proportion
from beholder.review.static import static_page


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("review")
    a = score_table(folder / "a", 24, groups=4, seed=0, shard_members=4)
    b = score_table(folder / "b", 20, groups=4, seed=1)
    return a, b


def review(table: Path, **criteria) -> ReviewSession:
    return ReviewSession(ScoreTable.read(table, criteria.get("group_by")), Criteria(**criteria))


# ------------------------------------------------------------------------------------------------ decisions log


def test_decisions_are_appended_one_fsynced_line_each_and_replayed(tmp_path):
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, "review", start={"sources": ["s.parquet"]}) as log:
        log.decide("a.jpg", "keep")
        log.decide("b.jpg", "reject")
        log.decide("a.jpg", "star")  # a change of mind
        assert log.undo()["decision"] == "star"  # withdraws the latest: a.jpg is keep again
        assert log.state.current(("a.jpg",))["decision"] == "keep"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["start", "decision", "decision", "decision", "undo"]
    assert read_decisions(path) == {"a.jpg": "keep", "b.jpg": "reject"}
    with DecisionLog(path, "review") as log:  # resume: a replay, then more undos go further back
        assert log.undo()["path"] == "b.jpg"
        assert log.undo()["path"] == "a.jpg"
        assert log.undo() is None
        assert log.state.decided() == {}
    assert read_decisions(path) == {}


def test_a_torn_last_line_is_dropped_and_the_log_goes_on(tmp_path):
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, "review") as log:
        log.decide("a.jpg", "keep")
    with open(path, "ab") as f:
        f.write(b'{"event": "decision", "time": "x", "path": "b.jp')  # a crash mid-write
    with DecisionLog(path, "review") as log:
        log.decide("c.jpg", "star")
    assert read_decisions(path) == {"a.jpg": "keep", "c.jpg": "star"}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_one_review_at_a_time_and_the_mode_must_match(tmp_path):
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, "review"):
        with pytest.raises(DecisionLogError, match="another beholder review"):
            DecisionLog(path, "review")
    with pytest.raises(UsageError, match="holds review decisions"):
        DecisionLog(path, "ab")
    with pytest.raises(UsageError):
        DecisionLog(tmp_path / "e.jsonl", "review").decide("a.jpg", "maybe")
    (tmp_path / "bad.jsonl").write_text('{"event": "start", "mode": "review"}\nnot json\n')
    with pytest.raises(DecisionLogError, match="bad.jsonl:2"):
        read_state(tmp_path / "bad.jsonl", "review")


# ------------------------------------------------------------------------------------------------ sessions


def test_rows_under_review_are_selects_rows_with_stable_ids(tables):
    a, _ = tables
    session = review(a, group_by="prompt", top_k=3)
    expected = select(read_scores(a), group_by="prompt", top_k=3).table
    assert session.rows.paths == expected["path"].to_pylist()
    assert session.n_images == 12 and review(a, group_by="prompt", top_k=3).rows.paths == session.rows.paths
    assert len(review(a).rows) == 24  # no criteria: every scored row (the error row never)
    member = next(i for i, p in enumerate(review(a).rows.paths) if p.startswith("shard.tar/"))
    where = review(a).image(member)
    assert where.path == str(a.parent / "shard.tar") and where.member.startswith("m")
    with pytest.raises(KeyError):
        session.image(12)
    page = session.page(ReviewState("review"))
    assert page["groups"] == ["prompt 0", "prompt 1", "prompt 2", "prompt 3"]
    assert len(page["dims"]) == 12 and page["heads"] == ["lm", "regression", "expert", "metavoter"]
    assert [r["score"] for r in page["rows"][:3]] == sorted((r["score"] for r in page["rows"][:3]), reverse=True)


def test_decisions_table_is_keyed_by_path_and_resume_points_at_the_latest(tables, tmp_path):
    a, _ = tables
    session = review(a, group_by="prompt", top_k=3)
    with DecisionLog(tmp_path / "d.jsonl", "review") as log:
        log.decide(session.rows.paths[4], "star")
        log.decide(session.rows.paths[1], "reject")
        page = session.page(log.state)
        assert page["decisions"] == {4: "star", 1: "reject"} and page["resume"] == 1
        table = session.decisions_table(log.state)
    assert table.column_names[: len(session.rows.table.column_names)] == session.rows.table.column_names
    decided = dict(zip(table["path"].to_pylist(), table["decision"].to_pylist()))
    assert decided[session.rows.paths[4]] == "star" and list(decided.values()).count(None) == 10


def test_ab_pairs_rank_by_rank_within_shared_groups_with_sides_mixed(tables):
    a, b = tables
    session = PairSession(ScoreTable.read(a), ScoreTable.read(b), Criteria(group_by="prompt", top_k=2))
    assert len(session.pairs) == 8 and session.unpaired == (0, 0)
    for pair in session.pairs:  # A's k-th best against B's k-th best, of the same prompt
        ra, ia = session._where(pair.a)
        rb, ib = session._where(pair.b)
        assert ra is session.a and rb is session.b and ra.groups[ia] == rb.groups[ib] == pair.group
        assert ia % 2 == ib % 2
        assert pair.pick(pair.side("A")) == "A" and pair.pick(pair.side("B")) == "B" and pair.pick("tie") == "tie"
    assert {pair.a_left for pair in session.pairs} == {True, False}
    with pytest.raises(UsageError, match="--group-by"):
        PairSession(ScoreTable.read(a), ScoreTable.read(b), Criteria())


# ------------------------------------------------------------------------------------------------ reports


def test_wilson_interval_is_the_textbook_formula():
    p = proportion(7, 10, 0.95)
    z, n, phat = 1.959963984540054, 10, 0.7
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    assert (p.rate, p.ci_low, p.ci_high) == pytest.approx((0.7, centre - half, centre + half), abs=1e-9)
    assert math.isnan(proportion(0, 0, 0.95).rate)


def test_preference_report_counts_ties_apart_and_measures_agreement(tables, tmp_path):
    a, b = tables
    session = PairSession(ScoreTable.read(a), ScoreTable.read(b), Criteria(group_by="prompt", top_k=2))
    higher = [("A" if a > b else "B") for a, b in map(session.scores, session.pairs)]
    with DecisionLog(tmp_path / "p.jsonl", "ab") as log:
        for pair, h in zip(session.pairs, higher):  # the person agrees with the scorer on 5 pairs, ties on 1
            pick = "tie" if pair.id == 7 else h if pair.id < 5 else ("B" if h == "A" else "A")
            log.pick(pair.group, pair.a_path, pair.b_path, pick)
        report = preference_report(session, log.state)
    assert (report.judged, report.ties, report.wins_a + report.wins_b) == (8, 1, 7)
    assert report.win_rate_a.n == 7 and report.win_rate_a.count == report.wins_a
    assert (report.agreement.count, report.agreement.n) == (5, 7) and report.scorer_ties == 0
    assert report.scorer_win_rate_a.count == higher.count("A")
    assert report.preferred is None  # 7 decisive picks cannot make a significant preference here
    assert "ties" in report.ties_note


def test_review_summary_agreement_is_the_auc_within_groups(tables, tmp_path):
    a, _ = tables
    session = review(a, group_by="prompt", top_k=3)
    with DecisionLog(tmp_path / "d.jsonl", "review") as log:
        log.decide(session.rows.paths[0], "keep")  # prompt 0: the best kept, the worst rejected
        log.decide(session.rows.paths[2], "reject")
        log.decide(session.rows.paths[3], "reject")  # prompt 1: the best rejected, the second starred
        log.decide(session.rows.paths[4], "star")
        summary = review_summary(session, log.state)
    assert (summary.reviewed, summary.keep, summary.star, summary.reject) == (4, 1, 1, 2)
    assert (summary.agreement, summary.agreement_pairs) == (0.5, 2)


# ------------------------------------------------------------------------------------------------ thumbnails


def test_thumbnails_fit_the_box_are_cached_and_follow_edits(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(1, "jpg", (1200, 800)))
    thumbs = Thumbnails(tmp_path / "cache")
    first = thumbs.get(Located(str(photo)), 384)
    assert Image.open(io.BytesIO(first)).size == (384, 256)
    [cached] = (tmp_path / "cache").rglob("*.jpg")
    assert cached.read_bytes() == first and thumbs.get(Located(str(photo)), 384) == first
    photo.write_bytes(encode(2, "jpg", (600, 900)))  # edited: new size and mtime, a new thumbnail
    os.utime(photo, ns=(1, 1))
    assert Image.open(io.BytesIO(thumbs.get(Located(str(photo)), 384))).size == (256, 384)
    small = tmp_path / "small.png"
    small.write_bytes(encode(3, "png", (40, 30)))
    assert Image.open(io.BytesIO(thumbs.get(Located(str(small)), 384))).size == (40, 30)  # never enlarged
    with pytest.raises(ValueError):
        (tmp_path / "text.jpg").write_text("not an image")
        thumbs.get(Located(str(tmp_path / "text.jpg")), 384)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_members_get_thumbnails_seeked_or_streamed(tmp_path, suffix):
    members = {f"{i}.jpg": encode(i, "jpg", (90 + i, 60)) for i in range(5)}
    shard = tmp_path / f"shard{suffix}"
    if suffix == ".tar":
        write_shard(shard, members)
    else:
        with tarfile.open(shard, "w:gz") as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    thumbs = Thumbnails(tmp_path / "cache")
    for name, data in reversed(members.items()):
        expected = Image.open(io.BytesIO(data)).size
        assert Image.open(io.BytesIO(thumbs.get(Located(str(shard), name), 384))).size == expected
    with pytest.raises(FileNotFoundError):
        thumbs.get(Located(str(shard), "absent.jpg"), 384)


# ------------------------------------------------------------------------------------------------ the API


@pytest.fixture
def client(tables, tmp_path):
    from fastapi.testclient import TestClient

    from beholder.review.app import create_review_app

    session = review(tables[0], group_by="prompt", top_k=3)
    with DecisionLog(tmp_path / "d.jsonl", "review") as log:
        app = create_review_app(session, log, Thumbnails(tmp_path / "cache"))
        with TestClient(app, base_url="http://127.0.0.1:8765") as c:
            c.session_, c.log = session, log
            yield c


def test_api_records_decisions_and_undo_and_exports_them(client):
    page = client.get("/api/session").json()
    assert len(page["rows"]) == 12 and page["decisions"] == {}
    for row, decision in ((0, "keep"), (5, "star"), (7, "reject")):
        assert client.post("/api/decisions", json={"row": row, "decision": decision}).status_code == 200
    assert client.post("/api/undo").json() == {"undone": {"row": 7, "decision": None}}
    assert client.get("/api/session").json()["decisions"] == {"0": "keep", "5": "star"}
    assert read_decisions(client.log.path) == {client.session_.rows.paths[0]: "keep",
                                               client.session_.rows.paths[5]: "star"}  # fmt: skip
    for fmt in ("csv", "jsonl", "parquet"):
        response = client.get(f"/api/export.{fmt}")
        assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
        file = client.log.path.parent / f"export.{fmt}"
        file.write_bytes(response.content)
        table = read_table(file)
        assert len(table) == 12 and table["decision"].to_pylist().count(None) == 10
    assert client.get("/api/report").json()["keep"] == 1
    assert client.get("/api/rows/3").json()["path"] == client.session_.rows.paths[3]


def test_api_serves_images_by_row_id_only(client):
    thumb = client.get("/api/images/2/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    assert client.get("/api/images/2/preview").status_code == 200
    for refused in (
        "/api/images/12/thumb",  # not under review (13 rows in the table, 12 selected)
        "/api/images/-1/thumb",
        "/api/images/2/original",
        "/api/images/..%2F..%2Fetc%2Fpasswd/thumb",
        "/api/images/%2Fetc%2Fpasswd/thumb",
        "/api/images?path=/etc/passwd",
        "/api/image?path=img0-0000.jpg",
        "/assets/..%2F..%2Freview%2Fapp.py",
        "/assets/index.html",
        "/img0-0000.jpg",
    ):
        response = client.get(refused)
        assert response.status_code in (400, 404), refused
        assert response.headers["content-type"].startswith("application/json"), refused


def test_api_refuses_writes_from_other_sites(client):
    body = json.dumps({"row": 1, "decision": "keep"})
    assert client.post("/api/decisions", content=body, headers={"Content-Type": "text/plain"}).status_code == 400
    assert client.post("/api/decisions", json={"row": 1, "decision": "keep"}, headers={"Host": "evil.test"}).status_code == 400
    assert client.post("/api/decisions", json={"row": 99, "decision": "keep"}).status_code == 404
    assert client.post("/api/decisions", json={"row": 1, "decision": "maybe"}).status_code == 400
    assert client.post("/api/picks", json={"pair": 0, "side": "left"}).status_code == 404  # not an A/B review
    assert read_decisions(client.log.path) == {}


def test_page_and_assets_are_served_and_the_static_page_is_self_contained(client, tables):
    response = client.get("/")
    html = response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert 'src="assets/review.js"' in html and "http" not in html.replace('http-equiv', '')
    assert client.get("/assets/review.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/assets/review.css").status_code == 200
    page, unreadable = static_page(client.session_, client.log.state, Thumbnails(client.log.path.parent / "c2"))
    assert unreadable == 0 and page.count("data:image/jpeg;base64,") == 12
    assert "assets/" not in page and "http://" not in page and "https://" not in page
    assert "</script>" not in page.split('id="beholder-data"')[1].split("</script>")[0]


# ------------------------------------------------------------------------------------------------ command line


def test_select_delivers_the_kept_and_starred_images(tables, tmp_path, capsys):
    a, _ = tables
    session = review(a)
    decisions = tmp_path / "d.jsonl"
    member = next(p for p in session.rows.paths if p.startswith("shard.tar/"))
    with DecisionLog(decisions, "review") as log:
        log.decide(session.rows.paths[0], "keep")
        log.decide(member, "star")
        log.decide(session.rows.paths[2], "reject")
        log.decide(session.rows.paths[3], "keep")
        log.undo()
    out = tmp_path / "delivery"
    assert main(["select", str(a), "--decisions", str(decisions), "--copy-to", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([session.rows.paths[0], member.split("/")[1]])
    assert main(["select", str(a), "--decisions", str(decisions), "--keep", "star", "-o", str(tmp_path / "s.csv")]) == 0
    assert read_table(tmp_path / "s.csv")["path"].to_pylist() == [member]
    assert main(["select", str(a), "--decisions", str(decisions), "--keep", "keep,maybe"]) == 2
    assert "--keep takes some of keep,reject,star" in capsys.readouterr().err


def test_review_exports_and_summaries_without_a_server(tables, tmp_path, capsys):
    a, b = tables
    decisions = tmp_path / "d.jsonl"
    session = review(a, group_by="prompt", top_k=2)
    with DecisionLog(decisions, "review") as log:
        log.decide(session.rows.paths[1], "keep")
    base = ["review", str(a), "--group-by", "prompt", "--top-k", "2", "--decisions", str(decisions)]
    html, table = tmp_path / "out.html", tmp_path / "out.parquet"
    assert main([*base, "--static", str(html), "--export", str(table), "--summary",
                 "--thumbnail-cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    assert html.read_text().count("data:image/jpeg;base64,") == 8
    assert read_table(table)["decision"].to_pylist() == [None, "keep"] + [None] * 6
    assert "reviewed 1 of 8 images: keep 1" in capsys.readouterr().out
    picks = tmp_path / "p.jsonl"
    pairs = PairSession(ScoreTable.read(a), ScoreTable.read(b), Criteria(group_by="prompt"))
    with DecisionLog(picks, "ab") as log:
        log.pick(pairs.pairs[0].group, pairs.pairs[0].a_path, pairs.pairs[0].b_path, "tie")
    assert main(["review", str(a), str(b), "--group-by", "prompt", "--decisions", str(picks), "--summary"]) == 0
    printed = capsys.readouterr().out
    assert "judged 1: A 0, B 0, tie 1" in printed and "p.report.json" in printed
    assert json.loads((tmp_path / "p.report.json").read_text())["pairs"] == 20
    assert main(["review", str(a), str(b), "--static", str(html)]) == 2  # A/B needs --group-by
    assert main(["review", str(a), str(b), "--group-by", "prompt", "--decisions", str(picks), "--static", str(html),
                 "--thumbnail-cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    page = html.read_text()
    assert page.count("data:image/jpeg;base64,") == 2 * len(pairs.pairs)  # both images of every pair, and blind:
    assert "a_path" not in page and pairs.pairs[0].a_path not in page  # no path, score or model name on it
    assert '"ties": 1' in page and '"judged": 1' in page  # the preference report, embedded
    assert main(["review", str(a), "--decisions", str(picks), "--summary"]) == 2  # a picks file is no review's
    assert main(["review", str(tmp_path / "absent.parquet")]) == 101


def test_a_review_with_a_key_lets_in_only_browsers_that_opened_it_with_the_key(tables, tmp_path):
    from fastapi.testclient import TestClient

    from beholder.review.app import create_review_app
    from beholder.serve.security import ApiKey

    session = review(tables[0], group_by="prompt", top_k=3)
    with DecisionLog(tmp_path / "d.jsonl", "review") as log:
        app = create_review_app(session, log, Thumbnails(tmp_path / "cache"), host="0.0.0.0", key=ApiKey("s3cret-K"))
        with TestClient(app, base_url="http://review.example:8765") as browser:
            for path in ("/", "/assets/review.js", "/api/session", "/api/images/0/thumb", "/api/export.csv",
                         "/metrics", "/?key=wrong"):  # fmt: skip
                response = browser.get(path)
                assert response.status_code == 401 and "key" in response.json()["detail"], path
            assert browser.post("/api/decisions", json={"row": 0, "decision": "keep"}).status_code == 401
            assert browser.get("/healthz").status_code == 200 and browser.get("/readyz").status_code == 200

            signed_in = browser.get("/?key=s3cret-K&view=grid", follow_redirects=False)
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/?view=grid"  # the key leaves
            cookie = signed_in.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret-K" not in cookie
            assert browser.get("/").status_code == 200  # the cookie lets the page, its calls and images in
            assert browser.get("/api/images/0/thumb").headers["content-type"] == "image/jpeg"
            assert browser.post("/api/decisions", json={"row": 0, "decision": "keep"}).status_code == 200
        with TestClient(app, base_url="http://review.example:8765") as script:
            assert script.get("/api/session", headers={"Authorization": "Bearer s3cret-K"}).json()["decisions"] == {
                "0": "keep"}
            assert script.get("/api/session", headers={"Authorization": "Bearer s3cret-k"}).status_code == 401
            script.cookies.set(cookie.split("=")[0], "0" * 64)  # a forged session
            assert script.get("/api/session").status_code == 401
    assert read_decisions(log.path) == {session.rows.paths[0]: "keep"}
