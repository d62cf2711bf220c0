"""``make bench`` cannot rot: each new section's core runs at a tiny size and yields sane figures and a table.

The full-size runs (and the throw-away PostgreSQL of the warehouse benchmark) are ``make bench``'s job; here the
judge stage runs 8 calls of a 10 ms judge and the warehouse write 500 rows on SQLite.
"""

from __future__ import annotations

import math

from benchmarks import judge_stage, warehouse_upsert


def test_judge_stage_measures_our_pool_against_the_ideal_and_the_serial_loop() -> None:
    latency = 0.01
    per_call, rows = judge_stage.measure(latency, calls={1: 8, 4: 8}, serial_calls=8, repeats=1)
    assert latency <= per_call < 1.0
    assert [(r.concurrency, r.calls, r.peak_in_flight) for r in rows] == [(1, 8, 1), (4, 8, 4)]
    for r in rows:
        assert r.ideal_s == r.calls * latency / r.concurrency and math.isfinite(r.wall_s) and r.wall_s > 0
        assert 0 < r.ratio <= 1.05 and r.serial_s > 0 and r.speedup > 0
    text, ok = judge_stage.table(latency, per_call, rows)
    assert text.startswith("| concurrency | calls | ideal s | wall s | ideal / wall |") and isinstance(ok, bool)
    assert [line.split(" |")[0] for line in text.splitlines()[2:4]] == ["| 1", "| 4"]  # one line per concurrency


def test_warehouse_write_compares_ours_with_row_by_row_on_sqlite() -> None:
    results = warehouse_upsert.measure(500, postgres=False, repeats=1)
    assert [r.method.split(":")[0] for r in results] == ["ours", "row by row", "floor"]
    assert all(r.database == "SQLite" and r.rows == 500 and 0 < r.seconds < 30 for r in results)
    assert all(math.isfinite(r.rows_per_s) and r.rows_per_s > 0 for r in results)
    (verdict,) = warehouse_upsert.verdicts(results)
    assert verdict.vs_copy is None and verdict.vs_row_by_row > 0 and verdict.reference_vs_row_by_row > 0
    text = warehouse_upsert.table(results)
    assert text.startswith("| database | method | rows | seconds | rows/s |") and text.count("| SQLite |") == 3
    assert all(line.startswith("- SQLite: speed-up of ours") for line in verdict.lines())


def test_row_by_row_subset_is_scaled_and_says_so() -> None:
    results = warehouse_upsert.measure(200, row_by_row_rows=100, postgres=False, repeats=1)
    slow = next(r for r in results if r.method.startswith("row by row"))
    assert slow.scaled_from == 100 and slow.rows == 200
    assert "timed on 100 rows, scaled x2" in warehouse_upsert.table(results)


def test_both_sections_are_in_make_bench() -> None:
    from benchmarks.run import SECTIONS

    assert judge_stage.run in SECTIONS and warehouse_upsert.run in SECTIONS
