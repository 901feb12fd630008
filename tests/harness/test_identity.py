from harness.config import parse_run_config
from harness.identity import entry_fields, flatten
from tests.conftest import tiny_run


def test_entry_fields_are_the_config_without_seed_lr_and_task():
    """entry_fields feeds the leaderboard labels that tell entries of one architecture
    apart; the task, seed and lr are not part of an entry, so they never show there."""
    dump = parse_run_config(tiny_run(seed=3)).model_dump(mode="json")
    fields = entry_fields(dump)
    everything = flatten(dump)
    left_out = set(everything) - set(fields)
    assert left_out == {"seed", "optimizer.lr"} | {k for k in everything if k.startswith("task.")}
    assert any(k.startswith("task.params.") for k in left_out) and "task.name" in left_out
    assert fields == {k: v for k, v in everything.items() if k not in left_out}
    assert fields["optimizer.weight_decay"] == 0.1 and fields["arch.d_model"] == 32
    assert entry_fields(dump) == fields and dump == parse_run_config(tiny_run(seed=3)).model_dump(mode="json")
