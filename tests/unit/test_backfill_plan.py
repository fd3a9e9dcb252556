"""`imagegate backfill`'s plan and checkpoint, without a broker: what a source row becomes, what is
skipped and why, where a resumed run starts. Publishing itself is tested against the real broker
(tests/integration/test_operator_backfill.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from producer_tools.backfill import BackfillItem, Checkpoint, Skip, from_file, read_plan, start_or_resume, write_plan
from producer_tools.exit_codes import UsageError


def entries(path):
    return list(from_file(path))


def test_csv_rows_become_items_with_blank_cells_as_absent(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("image_id,url,seller_id,role\n"
                   "a, https://cdn.example.com/a.jpg ,S1,gallery\n"
                   "b,https://cdn.example.com/b.jpg,,\n")
    a, b = entries(src)
    assert a == BackfillItem("a", "https://cdn.example.com/a.jpg", seller_id="S1", role="gallery")
    assert b == BackfillItem("b", "https://cdn.example.com/b.jpg")  # blank role: "main"; blank seller: absent


def test_csv_without_the_needed_columns_is_a_usage_error(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("image,url\nx,https://cdn.example.com/x.jpg\n")
    with pytest.raises(UsageError, match=r"missing \['image_id'\]"):
        entries(src)
    with pytest.raises(UsageError, match="no such file"):
        entries(tmp_path / "nope.csv")


def test_invalid_csv_row_is_skipped_with_its_line_number(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("image_id,url\nok,https://cdn.example.com/ok.jpg\nbad,\n")
    ok, bad = entries(src)
    assert isinstance(ok, BackfillItem)
    assert isinstance(bad, Skip) and bad.reason == "invalid" and bad.detail.startswith("c.csv line 3: ")


def test_jsonl_lines_blank_lines_and_bad_lines(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"image_id": "j1", "url": "https://cdn.example.com/j1.jpg", "policy": "lenient"}\n'
                   "\n"
                   "{not json\n"
                   "[1, 2]\n"
                   '{"image_id": "j2", "url": "https://cdn.example.com/j2.jpg"}\n')
    got = entries(src)
    assert got[0] == BackfillItem("j1", "https://cdn.example.com/j1.jpg", policy="lenient")
    assert isinstance(got[1], Skip) and got[1].detail.startswith("c.jsonl line 3: not JSON")
    assert isinstance(got[2], Skip) and got[2].detail == "c.jsonl line 4: not an object"
    assert got[3] == BackfillItem("j2", "https://cdn.example.com/j2.jpg")
    assert len(got) == 4


def test_a_file_without_suffix_is_read_by_its_first_character(tmp_path):
    as_json = tmp_path / "export"
    as_json.write_text('{"image_id": "j", "url": "https://cdn.example.com/j.jpg"}\n')
    as_csv = tmp_path / "export2"
    as_csv.write_text("image_id,url\nc,https://cdn.example.com/c.jpg\n")
    assert entries(as_json) == [BackfillItem("j", "https://cdn.example.com/j.jpg")]
    assert entries(as_csv) == [BackfillItem("c", "https://cdn.example.com/c.jpg")]


def test_plan_counts_items_skips_and_the_limit(tmp_path):
    items = [BackfillItem(f"i{n}", f"https://cdn.example.com/{n}.jpg") for n in range(4)]
    seen: list[Skip] = []
    plan = tmp_path / "p.jsonl"
    total, skipped = write_plan([items[0], Skip("invalid", "x"), *items[1:]], plan, 3, seen.append)
    assert total == 3 and skipped == Counter({"invalid": 1, "over --limit": 1})
    assert seen == [Skip("invalid", "x")]
    assert [json.loads(line)["image_id"] for line in plan.read_text().splitlines()] == ["i0", "i1", "i2"]
    assert list(read_plan(plan, 1)) == [(1, items[1]), (2, items[2])]  # a resume starts at the checkpoint's count
    assert write_plan(items, tmp_path / "all.jsonl", None, seen.append)[0] == 4


def test_resume_takes_the_checkpoint_and_refuses_another_backfills(tmp_path):
    cp_path = tmp_path / "cp.json"
    plan_calls = []

    def plan(p):
        plan_calls.append(p)
        return write_plan([BackfillItem("a", "https://cdn.example.com/a.jpg")], p, None, lambda s: None)

    cp, resumed = start_or_resume(cp_path, "file:x.csv", "in", False, plan)
    assert not resumed and (cp.total, cp.done) == (1, 0) and plan_calls == [Checkpoint.plan_path(cp_path)]
    cp.done = 1
    cp.save(cp_path)
    again, resumed = start_or_resume(cp_path, "file:x.csv", "in", False, plan)
    assert resumed and (again.run_id, again.done, again.total) == (cp.run_id, 1, 1) and len(plan_calls) == 1
    fresh, resumed = start_or_resume(cp_path, "file:x.csv", "in", True, plan)  # --restart
    assert not resumed and fresh.run_id != cp.run_id and fresh.done == 0
    with pytest.raises(UsageError, match="belongs to another backfill"):
        start_or_resume(cp_path, "file:x.csv", "other-topic", False, plan)
    Checkpoint.plan_path(cp_path).unlink()
    with pytest.raises(UsageError, match="is missing"):
        start_or_resume(cp_path, "file:x.csv", "in", False, plan)
    cp_path.write_text("{half a checkpoint")
    with pytest.raises(UsageError, match="unreadable"):
        start_or_resume(cp_path, "file:x.csv", "in", False, plan)


def test_event_ids_are_stable_per_run_and_position():
    item = BackfillItem("a", "https://cdn.example.com/a.jpg")
    first = item.event("run-1", 7)
    assert first.event_id == item.event("run-1", 7).event_id  # a duplicate after a crash is recognisable
    assert len({first.event_id, item.event("run-1", 8).event_id, item.event("run-2", 7).event_id}) == 3
    assert first.trigger == "backfill" and first.image_id == "a" and first.occurred_at is not None


# --- gaps found by mutation testing ---------------------------------------------------------
def test_backfilled_event_carries_every_field_of_the_item():
    item = BackfillItem("a", "https://cdn.example.com/a.jpg", listing_id="L1", seller_id="S1", role="gallery",
                        policy="lenient", content_sha256="ab" * 32)
    ev = item.event("run", 0)
    assert (ev.listing_id, ev.seller_id, ev.role, ev.policy, ev.content_sha256) == ("L1", "S1", "gallery", "lenient", "ab" * 32)


def test_jsonl_is_known_by_its_suffix_in_any_case_even_when_it_starts_with_a_blank_line(tmp_path):
    for name in ("upper.JSONL", "x.ndjson", "x.json"):
        src = tmp_path / name
        src.write_text('\n{"image_id": "j", "url": "https://cdn.example.com/j.jpg"}\n')
        assert entries(src) == [BackfillItem("j", "https://cdn.example.com/j.jpg")], name
    csv = tmp_path / "upper.CSV"
    csv.write_text("image_id,url\nc,https://cdn.example.com/c.jpg\n")
    assert entries(csv) == [BackfillItem("c", "https://cdn.example.com/c.jpg")]


def test_unreadable_jsonl_lines_are_counted_as_invalid(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{not json\n"a string"\n')
    assert [(s.reason, s.detail.split(":")[0]) for s in entries(src)] == [("invalid", "c.jsonl line 1"),
                                                                          ("invalid", "c.jsonl line 2")]


def test_every_skip_and_every_item_over_the_limit_is_counted(tmp_path):
    items = [BackfillItem(f"i{n}", f"https://cdn.example.com/{n}.jpg") for n in range(4)]
    total, skipped = write_plan([Skip("invalid"), items[0], Skip("invalid"), *items[1:], Skip("unreadable")],
                                tmp_path / "p.jsonl", 1, lambda s: None)
    assert total == 1 and skipped == Counter({"invalid": 2, "over --limit": 3, "unreadable": 1})


def test_a_new_run_records_its_skips_and_creates_the_checkpoint_folder(tmp_path):
    cp_path = tmp_path / "runs" / "2026" / "cp.json"
    cp, resumed = start_or_resume(cp_path, "file:x.csv", "in", False,
                                  lambda p: write_plan([Skip("invalid"), Skip("invalid")], p, None, lambda s: None))
    assert not resumed and cp.skipped == {"invalid": 2} and cp.total == 0
    assert Checkpoint.load(cp_path).skipped == {"invalid": 2}  # a resumed run reports them too


def test_an_invalid_jsonl_object_is_reported_with_its_line(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"image_id": "ok", "url": "https://cdn.example.com/ok.jpg"}\n{"image_id": "no-url"}\n')
    ok, bad = entries(src)
    assert isinstance(bad, Skip) and bad.reason == "invalid" and bad.detail.startswith("c.jsonl line 2: ")
    assert "url" in bad.detail
