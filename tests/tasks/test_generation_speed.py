from __future__ import annotations

from tasks.generation_speed import TARGET_TOKENS_PER_S, bench_probes, format_table, main


def test_bench_probes_times_every_probe(capsys):
    rows = bench_probes(preset="quick", n_tokens=3_000, reps=1)
    assert {r["task"] for r in rows} >= set(TARGET_TOKENS_PER_S)
    for r in rows:
        assert r["tokens"] >= 3_000 and r["tokens_per_s"] > 0 and r["rows"] * r["seq_len"] == r["tokens"]
        assert r["target_tokens_per_s"] == TARGET_TOKENS_PER_S[r["task"]]
        assert r["meets_target"] is (r["tokens_per_s"] >= r["target_tokens_per_s"])
    table = format_table(rows)
    assert "modular_addition" in table and "Mtok/s" in table
    main(["--preset", "quick", "--tokens", "2000", "--reps", "1", "--tasks", "mqar"])
    assert "mqar" in capsys.readouterr().out


def test_presets_a_probe_lacks_are_skipped():
    rows = bench_probes(preset="paper-5x5", n_tokens=500, reps=1)
    assert [(r["task"], r["preset"], r["seq_len"]) for r in rows] == [("multiplication", "paper-5x5", 21)]
