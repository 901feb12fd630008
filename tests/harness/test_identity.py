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


def test_digest_is_sha256_of_compact_sorted_json():
    """The ids must stay the same across archbench versions (the store matches new runs
    against old rows by id), so the canonical form is fixed: keys sorted, no spaces, values
    JSON has no type for written as their str(), the first 16 hex digits of the sha256."""
    import hashlib
    from pathlib import Path

    from harness.identity import canonical_json, digest

    obj = {"b": [1, 2.5, None, True], "a": {"y": "s", "x": Path("/data/x")}}
    text = '{"a":{"x":"/data/x","y":"s"},"b":[1,2.5,null,true]}'  # written out by hand
    assert canonical_json(obj) == text
    assert digest(obj) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_ids_of_partial_old_configs_leave_out_only_what_is_there():
    """The store's migration computes ids from the configs old rows kept, which may lack
    keys or hold a section that is not a mapping; the ids drop what is present and the
    input is never changed."""
    import copy

    from harness.identity import digest, entry_id_of, setting_id_of

    old = {"arch": {"name": "transformer"}, "optimizer": None, "task": {"name": "mqar"}}
    kept = copy.deepcopy(old)
    assert setting_id_of(old) == digest(old)  # no seed, no lr: nothing to leave out
    assert entry_id_of(old) == digest({"arch": {"name": "transformer"}, "optimizer": None})
    assert setting_id_of({**old, "seed": 3}) == setting_id_of(old)
    no_optimizer = {"arch": {"name": "transformer"}, "seed": 1}
    assert setting_id_of(no_optimizer) == digest({"arch": {"name": "transformer"}})
    assert old == kept
    full = {"seed": 1, "optimizer": {"lr": 0.1, "weight_decay": 0.0}, "task": {"name": "mqar"}}
    kept = copy.deepcopy(full)
    assert setting_id_of(full) == digest({"optimizer": {"weight_decay": 0.0}, "task": {"name": "mqar"}})
    assert entry_id_of(full) == digest({"optimizer": {"weight_decay": 0.0}})
    assert full == kept  # the caller's nested dicts keep their lr


def test_identity_columns_are_the_ids_and_the_model_size():
    from harness.identity import entry_id_of, identity_columns, setting_id_of, task_id_of

    dump = parse_run_config(tiny_run(arch={"d_model": 48, "n_layers": 3, "n_heads": 4})).model_dump(mode="json")
    assert identity_columns(dump) == dict(entry_id=entry_id_of(dump), setting_id=setting_id_of(dump),
                                          task_id=task_id_of(dump), d_model=48, n_layers=3, n_heads=4)
    assert len({entry_id_of(dump), setting_id_of(dump), task_id_of(dump)}) == 3
    # an old row without an arch section: ids, no sizes
    cols = identity_columns({"task": dump["task"], "seed": 0})
    assert (cols["d_model"], cols["n_layers"], cols["n_heads"]) == (None, None, None)
    assert cols["task_id"] == task_id_of(dump)


def test_flatten_keeps_empty_sections_under_their_own_key():
    """An empty section (``task.params: {}``) stays a column of its own, named by its full
    dotted path, so two configs that differ only in having it still flatten differently;
    only the top level of an empty config flattens to nothing."""
    assert flatten({}) == {}
    assert flatten({"params": {}}) == {"params": {}}
    assert flatten({"task": {"name": "mqar", "params": {}}}) == {"task.name": "mqar", "task.params": {}}
    assert flatten({"a": {"b": {"c": {}}}, "d": [1, {}]}) == {"a.b.c": {}, "d": [1, {}]}
