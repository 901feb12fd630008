import re

import pytest
import yaml

from harness.config import entry_id, expand_sweep, load_sweep, parse_run_config, run_id, setting_id
from harness.identity import task_id_of
from harness.errors import UserError
from tests.conftest import tiny_run


def test_run_id_is_stable_and_depends_on_every_setting():
    a = parse_run_config(tiny_run())
    assert run_id(a) == run_id(parse_run_config(tiny_run()))
    assert len(run_id(a)) == 16
    for change in ({"seed": 1}, {"optimizer": {"lr": 1e-3}}, {"arch": {"d_model": 64}},
                   {"task": {"name": "mqar", "params": {"vocab_size": 64, "seq_len": 32, "num_pairs": 2}}},
                   {"dtype": "bfloat16"}, {"train": {"steps": 21}}, {"train": {"batch_size": 16}},
                   {"optimizer": {"weight_decay": 0.0}}, {"device": "auto"}):
        assert run_id(parse_run_config(tiny_run(**change))) != run_id(a), change


def test_setting_and_entry_ids_leave_out_exactly_seed_lr_and_task():
    a = parse_run_config(tiny_run())
    for same_setting in ({"seed": 1}, {"optimizer": {"lr": 1e-3}}):
        b = parse_run_config(tiny_run(**same_setting))
        assert (setting_id(b), entry_id(b)) == (setting_id(a), entry_id(a)), same_setting
    other_task = parse_run_config(tiny_run(task={"params": {"num_pairs": 2}}))
    assert entry_id(other_task) == entry_id(a) and setting_id(other_task) != setting_id(a)
    for other_entry in ({"optimizer": {"weight_decay": 0.0}}, {"train": {"steps": 21}}, {"dtype": "bfloat16"},
                        {"arch": {"init_std": 0.05}}, {"arch": {"mlp_ratio": 2.0}}):
        b = parse_run_config(tiny_run(**other_entry))
        assert entry_id(b) != entry_id(a) and setting_id(b) != setting_id(a), other_entry


def test_run_id_hashes_the_resolved_config():
    # a preset and the same knobs spelled out are the same run; so are defaults left out or written
    via_preset = parse_run_config({"task": {"name": "mqar", "preset": "quick"}})
    from tasks import get_task_class

    explicit = parse_run_config({"task": {"name": "mqar", "params": get_task_class("mqar").presets["quick"]}})
    assert run_id(via_preset) == run_id(explicit)
    with_default = parse_run_config({"task": {"name": "mqar", "preset": "quick"}, "optimizer": {"lr": 1e-3},
                                     "arch": {"options": {"rope": True}}})
    assert run_id(with_default) == run_id(via_preset)
    assert via_preset.task.params["power_a"] == 0.01  # defaults are filled in


@pytest.mark.parametrize("bad, needle", [
    ({"optimiser": {"lr": 1}}, "optimiser: unknown key"),
    ({"arch": {"d_modle": 3}}, "arch.d_modle: unknown key"),
    ({"arch": {"name": "nosuch"}}, "unknown architecture 'nosuch'"),
    ({"arch": {"options": {"rope_bse": 1}}}, "rope_bse"),
    ({"task": {"name": "nosuch"}}, "unknown task 'nosuch'"),
    ({"task": {"name": "mqar", "preset": "huge"}}, "no preset 'huge'"),
    ({"task": {"name": "mqar", "params": {"num_pairs": 20, "seq_len": 64}}}, "seq_len >= 4 * num_pairs"),
    ({"task": {"name": "mqar", "params": {"vocab_size": 64, "seq_len": 64}}}, "vocab_size > seq_len"),
    ({"arch": {"d_model": 30, "n_heads": 4}}, "divisible by n_heads"),
    ({"train": {"steps": 10, "epochs": 2}}, "not both"),
    ({"optimizer": {"lr": -1}}, "optimizer.lr"),
])
def test_bad_configs_raise_one_clear_error(bad, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        parse_run_config(tiny_run(**bad))


def test_epochs_replace_steps():
    data = tiny_run()
    data["train"] = {"epochs": 2, "batch_size": 32}
    cfg = parse_run_config(data)
    assert cfg.train.steps is None and cfg.train.epochs == 2


def _write_sweep(tmp_path, data):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_sweep_expansion_is_a_deterministic_cartesian_product(tmp_path):
    p = _write_sweep(tmp_path, {"name": "s", "base": tiny_run(),
                                "grid": {"arch.name": ["transformer", "nope"], "optimizer.lr": [1e-3, 3e-3],
                                         "seed": [0, 1, 2]}})
    runs = expand_sweep(load_sweep(p))
    assert len(runs) == 12
    assert [(r.arch.name, r.optimizer.lr, r.seed) for r in runs][:4] == [
        ("transformer", 1e-3, 0), ("transformer", 1e-3, 1), ("transformer", 1e-3, 2), ("transformer", 3e-3, 0)]
    assert [run_id(r) for r in runs] == [run_id(r) for r in expand_sweep(load_sweep(p))]
    assert len({run_id(r) for r in runs}) == 12


def test_sweep_include_crosses_partial_configs(tmp_path):
    p = _write_sweep(tmp_path, {"name": "s", "base": tiny_run(), "grid": {"seed": [0, 1]},
                                "include": [{"task": {"params": {"num_pairs": 2}}}, {"task": {"params": {"num_pairs": 4}}}]})
    runs = expand_sweep(load_sweep(p))
    assert [(r.task.params["num_pairs"], r.seed) for r in runs] == [(2, 0), (2, 1), (4, 0), (4, 1)]


@pytest.mark.parametrize("data, needle", [
    ({"name": "s", "grid": {"seed": []}}, "non-empty list"),
    ({"name": "s", "grd": {}}, "grd: unknown key"),
    ({"name": "s", "base": tiny_run(), "grid": {"arch.nme": ["x"]}}, "arch.nme: unknown key"),
])
def test_bad_sweep_files(tmp_path, data, needle):
    with pytest.raises(UserError) as e:
        expand_sweep(load_sweep(_write_sweep(tmp_path, data)))
    assert needle in str(e.value)


def test_shipped_suites_expand():
    from harness.config import suite_path

    runs = expand_sweep(load_sweep(suite_path("quick")))
    assert len(runs) >= 6 and len({r.arch.name for r in runs}) >= 3


@pytest.mark.parametrize("name", ["quick", "quick-more", "grokking", "induction-1layer", "flipflop-path",
                                  "multiplication", "modular-addition"])
def test_builtin_suites_expand(name):
    from harness.config import expand_sweep, load_sweep, suite_path

    runs = expand_sweep(load_sweep(suite_path(name)))
    assert runs and len({run_id(c) for c in runs}) == len(runs)


def test_quick_suite_covers_every_arch_and_probe_at_one_size():
    """Every architecture, 3+ seeds and 2+ learning rates per (arch, task); runs of one
    architecture differ only in seed, lr and task, so each is one leaderboard entry; every
    built-in probe is in quick or in another shipped suite."""
    from harness.config import expand_sweep, load_sweep, suite_path
    from models import mixer_names
    from tasks import task_names

    runs = expand_sweep(load_sweep(suite_path("quick")))
    builtin_archs = {"transformer", "nope", "sliding", "fox", "path", "path-fox", "momentum", "linear", "deltanet"}
    builtin_tasks = {"mqar", "flipflop", "needle", "multiplication", "modular_addition", "state_tracking", "induction"}
    assert builtin_archs <= set(mixer_names()) and builtin_tasks <= set(task_names())
    assert {c.arch.name for c in runs} == builtin_archs
    assert len({c.arch.size_label for c in runs}) == 1  # one leaderboard row per architecture
    for c in runs:
        if c.arch.name == "sliding":
            assert c.arch.options["window"] < c.task.params["seq_len"]

    assert len({entry_id(c) for c in runs}) == len(builtin_archs)
    cells = {}
    for c in runs:
        seeds, lrs = cells.setdefault((c.arch.name, task_id_of(c.model_dump(mode="json"))), (set(), set()))
        seeds.add(c.seed)
        lrs.add(c.optimizer.lr)
    assert all(len(s) >= 3 and len(lr) >= 2 for s, lr in cells.values())

    shipped = {c.task.name for f in suite_path("quick").parent.glob("*.yaml")
               for c in expand_sweep(load_sweep(f))}
    assert builtin_tasks <= shipped


def test_quick_more_joins_the_quick_entries():
    """quick-more runs the quick suite's model and training on other probes: the same
    leaderboard entries (config minus seed, lr and task), the same seeds and lrs."""
    from harness.config import expand_sweep, load_sweep, suite_path

    def entries(name):
        return {(entry_id(c), c.seed, c.optimizer.lr) for c in expand_sweep(load_sweep(suite_path(name)))}

    quick, more = entries("quick"), entries("quick-more")
    assert quick == more
    tasks = {c.task.name for n in ("quick", "quick-more") for c in expand_sweep(load_sweep(suite_path(n)))}
    assert len(tasks) == 5



# -- every field of a resolved config is part of the run's identity --------------------

# The documented exclusions (harness/identity.py, README "How the leaderboard ranks"): runs of one setting
# differ only in seed and lr; entries also leave out the task.  Spelled out here, not read
# from harness.identity, so that a change to the exclusions fails this test.
NOT_IN_SETTING = {"seed", "optimizer.lr"}
NOT_IN_ENTRY_PREFIX = "task."
# fields no change of their own can move in a resolved config: the task they apply to
# (None: every task) and why
NORMALISED_AWAY = {
    "task.preset": (None, "resolution folds the preset into task.params and sets preset to None"),
    "task.params.n_train": ("modular_addition", "derived from p and the fractions"),
    "task.params.n_val": ("modular_addition", "derived from p and the fractions"),
    "task.params.n_test": ("modular_addition", "derived from p and the fractions"),
    # text reads one source: these tests set files, and dataset (with its config) cannot join it
    "task.params.dataset": ("text", "one source, files or dataset; the case sets files"),
    "task.params.dataset_config": ("text", "no value is tried for a None string"),
}
# changes that need a companion change to stay valid
COUPLED = {"train.epochs": {"train.steps": None}}  # epochs replace steps; both is an error


def _field_annotation(cfg, key):
    """The declared type of the dotted field ``key`` of a resolved RunConfig ``cfg``."""
    from models import get_mixer
    from tasks import get_task_class

    parts = key.split(".")
    if parts[:2] == ["arch", "options"]:
        return get_mixer(cfg.arch.name).Options.model_fields[parts[2]].annotation
    if parts[:2] == ["task", "params"]:
        return get_task_class(cfg.task.name).Config.model_fields[parts[2]].annotation
    model, annotation = type(cfg), None
    for p in parts:
        annotation = model.model_fields[p].annotation
        model = annotation
    return annotation


def _declared_fields(cfg):
    """Every leaf field the config models declare, as dotted keys: RunConfig's own fields,
    recursing into nested models, the mixer's Options and the task's Config.  Fields excluded
    from dumps (``arch.kernels``: which code path runs, not which experiment) are left out."""
    from pydantic import BaseModel

    from models import get_mixer
    from tasks import get_task_class

    def walk(model, prefix):
        out = set()
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out |= walk(ann, f"{prefix}{name}.")
            else:
                out.add(f"{prefix}{name}")
        return out

    fields = walk(type(cfg), "") - {"arch.options", "task.params"}
    fields |= walk(get_mixer(cfg.arch.name).Options, "arch.options.")
    fields |= walk(get_task_class(cfg.task.name).Config, "task.params.")
    return fields


def _alternatives(value, annotation):
    """Other values of a declared type, most plausible first; the caller keeps the first that
    validates and changes the resolved config."""
    import types
    import typing

    out = []
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for kind in typing.get_args(annotation) if union else (annotation,):
        origin = typing.get_origin(kind)
        if origin is typing.Literal:
            out += list(typing.get_args(kind))
        elif kind is bool:
            out += [not value] if isinstance(value, bool) else [True, False]
        elif kind is int:
            v = value if isinstance(value, int) and not isinstance(value, bool) else None
            out += ([v + 1, v * 2, v - 1, v // 2, v + 8] if v is not None else []) + [1, 2, 8, 64]
        elif kind is float:
            v = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            out += ([v * 2, v / 2, v + 0.05, v - 0.05] if v is not None else []) + [0.5, 0.05, 1.0, 2.0]
        elif origin in (tuple, list) and isinstance(value, list) and value:
            # one element changed at a time, then the last one dropped
            elem = typing.get_args(kind)
            for i, x in enumerate(value):
                ann = elem[0] if len(elem) == 2 and elem[1] is Ellipsis else elem[i]
                out += [value[:i] + [y] + value[i + 1:] for y in _alternatives(x, ann)[:2]]
            out.append(value[:-1])
        elif kind is str and isinstance(value, str):
            out.append(value + "x")
        elif kind is type(None):
            out.append(None)
    return [x for x in out if not (x == value and type(x) is type(value))]


def _set(data, dotted, value):
    *path, last = dotted.split(".")
    for p in path:
        data = data.setdefault(p, {})
    data[last] = value


def _variant(data, base, key):
    """A valid config that differs from ``base`` (``data`` resolved) in the field ``key``
    (plus the companions :data:`COUPLED` names), or None.  The change is made to ``data``,
    as a user would write it, so derived fields follow; a value that moves ``key`` alone is
    preferred, so that a hash ignoring ``key`` cannot pass on a derived field's change."""
    import copy

    from harness.identity import flatten
    from models import mixer_names
    from tasks import task_names

    base_leaves = flatten(base.model_dump(mode="json"))
    before = base_leaves[key]
    if key == "arch.name":
        alternatives = [n for n in mixer_names() if n != before]
    elif key == "task.name":
        alternatives = [n for n in task_names() if n != before]
    elif key == "task.preset":
        alternatives = ["quick", "paper"]
    else:
        alternatives = _alternatives(before, _field_annotation(base, key))
    fallback = None
    for alt in alternatives:
        d = copy.deepcopy(data)
        if key == "task.name":  # another task: its own knobs
            d["task"] = {"name": alt, "preset": "quick"}
        else:
            _set(d, key, alt)
        for k, v in COUPLED.get(key, {}).items():
            _set(d, k, v)
        try:
            other = parse_run_config(d)
        except UserError:
            continue
        after = flatten(other.model_dump(mode="json"))
        if after.get(key) == before:
            continue
        changed = {k for k in set(after) | set(base_leaves) if after.get(k) != base_leaves.get(k)}
        if changed <= {key, *COUPLED.get(key, {})} or key in ("arch.name", "task.name"):
            return other  # this field alone moved
        fallback = fallback or other  # a change that also moves fields derived from this one
    return fallback


def _id_cases():
    from models import mixer_names
    from tasks import task_names

    cases = [pytest.param(tiny_run(arch={"name": m}), id=f"{m}-mqar") for m in mixer_names()]
    room = {"induction": {"segment_len": 8},  # so that num_repeats can grow within seq_len
            "text": {"files": ["corpus/*.txt"]}}  # text has no default source (configs are not read here)
    for t in task_names():
        data = tiny_run()
        data["task"] = {"name": t, "preset": "quick", "params": room.get(t, {})}
        cases.append(pytest.param(data, id=f"transformer-{t}"))
    return cases


@pytest.mark.parametrize("data", _id_cases())
def test_every_config_field_changes_the_ids_except_the_documented_exclusions(data):
    """Walk every leaf of the resolved config (arch and the mixer's options, task and its
    params, optimizer, train, seed, device, dtype; the list comes from the config models),
    change it alone to another valid value, and check which ids move: the run id always;
    the setting id unless seed or lr; the entry id unless seed, lr or anything under task;
    the task id for task fields only."""
    from harness.identity import flatten

    base = parse_run_config(data)
    dump = base.model_dump(mode="json")
    leaves = flatten(dump)
    assert set(leaves) == _declared_fields(base)  # the dump holds every declared field, nothing else
    assert len(leaves) >= 35
    unvaried = set()
    for key in sorted(leaves):
        other = _variant(data, base, key)
        if other is None:
            unvaried.add(key)
            continue
        in_setting = key not in NOT_IN_SETTING
        in_entry = in_setting and not key.startswith(NOT_IN_ENTRY_PREFIX)
        assert run_id(other) != run_id(base), f"the run id ignores {key}"
        assert (setting_id(other) != setting_id(base)) == in_setting, f"setting id and {key}"
        assert (entry_id(other) != entry_id(base)) == in_entry, f"entry id and {key}"
        moved = task_id_of(other.model_dump(mode="json")) != task_id_of(dump)
        assert moved == key.startswith("task."), f"task id and {key}"
    # a field no valid change reaches is a gap in this test, unless resolution removes it
    expected = {k for k, (task, _) in NORMALISED_AWAY.items() if task in (None, base.task.name)}
    assert unvaried == expected, f"found no other valid value for {sorted(unvaried - expected)}"
    assert base.task.preset is None


def test_the_kernel_path_is_not_part_of_the_experiment(monkeypatch):
    """``arch.kernels`` picks Triton or torch for the same function: the run id, and what is
    stored as the run's config, are those of the run without it."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # so that triton is a valid choice on this CPU
    base = parse_run_config(tiny_run(arch={"name": "fox"}))
    for mode in ("torch", "triton", "auto"):
        other = parse_run_config(tiny_run(arch={"name": "fox", "kernels": mode}))
        assert other.arch.kernels == mode
        assert run_id(other) == run_id(base) and other.model_dump(mode="json") == base.model_dump(mode="json")
    with pytest.raises(UserError, match="arch.kernels: Input should be 'auto', 'torch' or 'triton'"):
        parse_run_config(tiny_run(arch={"name": "fox", "kernels": "cuda"}))


# -- error messages name the run, the file and the fix ---------------------------------

def test_validation_errors_render_location_and_message_without_pydantic_prefix():
    # a model-level check (train.steps vs train.epochs) comes back from pydantic as
    # "Value error, give ..."; the user sees the section and the sentence only
    with pytest.raises(UserError) as e:
        parse_run_config(tiny_run(train={"steps": 10, "epochs": 2}))
    assert str(e.value) == "invalid config: train: give train.steps or train.epochs, not both"
    with pytest.raises(UserError) as e:
        parse_run_config(tiny_run(optimiser={"lr": 1}))
    assert str(e.value) == ("invalid config: optimiser: unknown key "
                            "(check its spelling against the config reference in README.md)")
    from tests.conftest import ROOT

    assert "The run config (every key is checked" in (ROOT / "README.md").read_text()  # the file it names


def test_several_validation_errors_are_joined_by_semicolons():
    def message(**bad):
        with pytest.raises(UserError) as e:
            parse_run_config(tiny_run(optimizer={"warmup_steps": 2, **bad}))
        return str(e.value).removeprefix("invalid config: ")

    lr, eps = message(lr=-1), message(eps=0)
    assert lr.startswith("optimizer.lr: ") and eps.startswith("optimizer.eps: ")
    assert message(lr=-1, eps=0) == f"{lr}; {eps}"


def test_a_model_level_error_without_location_renders_the_message_alone():
    from pydantic import ValidationError

    from harness.config import TrainConfig, format_validation_error

    with pytest.raises(ValidationError) as e:
        TrainConfig(steps=10, epochs=2)
    assert e.value.errors()[0]["loc"] == ()
    assert format_validation_error(e.value) == "give train.steps or train.epochs, not both"


def test_a_bad_sweep_run_is_named_by_its_number_and_grid_values(tmp_path):
    # runs in grid order: (lr 0.001, seed 0), (0.001, 1), (-1, 0): the third is bad
    p = _write_sweep(tmp_path, {"name": "lrs", "base": tiny_run(),
                                "grid": {"optimizer.lr": [0.001, -1], "seed": [0, 1]}})
    with pytest.raises(UserError) as e:
        expand_sweep(load_sweep(p))
    assert str(e.value).startswith("invalid run 3 of sweep 'lrs' (optimizer.lr=-1, seed=0): optimizer.lr: ")
    # an error found when resolving the task names the run too
    p = _write_sweep(tmp_path, {"name": "pairs", "base": tiny_run(), "grid": {"task.params.num_pairs": [4, 20]}})
    with pytest.raises(UserError) as e:
        expand_sweep(load_sweep(p))
    assert str(e.value).startswith("invalid run 2 of sweep 'pairs' (task.params.num_pairs=20): "
                                   "invalid settings for task 'mqar': ")


def test_sweep_runs_with_the_same_resolved_config_are_expanded_once(tmp_path):
    p = _write_sweep(tmp_path, {"name": "s", "base": tiny_run(), "grid": {"seed": [0, 0, 1]},
                                # weight_decay 0.1 is the default: the second entry is the first, spelled out
                                "include": [{}, {"optimizer": {"weight_decay": 0.1}}]})
    runs = expand_sweep(load_sweep(p))
    assert [r.seed for r in runs] == [0, 1]
    assert len({run_id(r) for r in runs}) == 2


def test_merging_configs_shares_no_mutable_state_with_the_inputs():
    """Sweep runs and --set overrides are built by merging partial configs; a merged config
    must not alias the base's (or an include's) nested dicts and lists."""
    import copy

    from harness.config import _deep_merge, _set_path

    a = {"arch": {"options": {"window": 4}}, "task": {"name": "mqar", "params": {"grid": [1, 2]}}}
    b = {"task": {"preset": "quick"}, "extra": {"deep": {"v": [1]}}}
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    out = _deep_merge(a, b)
    assert out == {"arch": {"options": {"window": 4}},
                   "task": {"name": "mqar", "preset": "quick", "params": {"grid": [1, 2]}},
                   "extra": {"deep": {"v": [1]}}}
    out["arch"]["options"]["window"] = 99
    out["task"]["params"]["grid"].append(3)
    out["extra"]["deep"]["v"].append(2)
    assert (a, b) == (a0, b0)
    out2 = _set_path(a, "task.params.num_pairs", 8)
    out2["arch"]["options"]["window"] = 7
    out2["task"]["params"]["grid"].clear()
    assert a == a0 and out2["task"]["params"]["num_pairs"] == 8


def test_missing_unreadable_and_non_mapping_sweep_files_name_the_file(tmp_path):
    missing = tmp_path / "nosuch.yaml"
    with pytest.raises(UserError) as e:
        load_sweep(missing)
    assert str(e.value) == f"sweep file {str(missing)!r} does not exist"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\ngrid: {seed: [0, 1\n")
    with pytest.raises(UserError) as e:
        load_sweep(bad)
    assert str(e.value).startswith(f"{bad} is not valid YAML: ") and "line" in str(e.value)
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: s\n")
    with pytest.raises(UserError) as e:
        load_sweep(listed)
    assert str(e.value) == f"{listed} must hold a mapping with keys name, base, grid (see README.md)"


def test_a_sweep_without_a_name_is_named_after_its_file(tmp_path):
    p = tmp_path / "lr-scan.yaml"
    p.write_text(yaml.safe_dump({"base": tiny_run(), "grid": {"seed": [0]}}))
    assert load_sweep(p).name == "lr-scan"
    p.write_text(yaml.safe_dump({"name": "given", "base": tiny_run()}))
    assert load_sweep(p).name == "given"


def test_an_unknown_suite_lists_every_built_in_suite():
    import os

    from harness.config import suite_path
    from tests.conftest import ROOT

    shipped = sorted(f.removesuffix(".yaml") for f in os.listdir(ROOT / "harness" / "suites") if f.endswith(".yaml"))
    assert "quick" in shipped and len(shipped) >= 2
    with pytest.raises(UserError) as e:
        suite_path("nosuch")
    assert str(e.value) == f"unknown suite 'nosuch'; built-in suites: {', '.join(shipped)}"
    assert all(suite_path(n).is_file() for n in shipped)  # every name offered is one that works


# -- run, setting and entry ids agree with the ids the store computes from the config it keeps --

def test_ids_agree_with_the_stored_config_for_a_plugin_task_with_an_enum_knob(monkeypatch):
    """The store keeps ``cfg.model_dump(mode="json")`` and derives its id columns from it
    (and the migration recomputes them from the JSON it kept).  run_id, setting_id and
    entry_id must hash the same JSON, also for a task whose resolved params hold values
    JSON has no type for (a plugin task's Enum knob), which a Python-mode dump would hash
    as the Enum's repr instead."""
    import enum
    import json

    import tasks.registry
    from harness.identity import entry_id_of, run_id_of, setting_id_of
    from harness.train import run_fields
    from tasks.base import Task, TaskConfig

    class Mode(enum.Enum):
        SHORT = "short"
        LONG = "long"

    class EnumConfig(TaskConfig):
        mode: Mode = Mode.SHORT

    class EnumTask(Task):
        Config = EnumConfig

    EnumTask.name = "enum_probe"
    monkeypatch.setitem(tasks.registry.TASKS._items, "enum_probe", EnumTask)
    cfgs = [parse_run_config(tiny_run(task={"name": "enum_probe", "params": {"mode": m}})) for m in ("short", "long")]
    assert cfgs[0].task.params["mode"] is Mode.SHORT  # the resolved params hold the Enum itself
    for cfg in cfgs:
        fields = run_fields(cfg, None)
        stored = json.loads(json.dumps(fields["config"]))
        assert stored["task"]["params"]["mode"] in ("short", "long")
        assert run_id(cfg) == run_id_of(stored)
        assert setting_id(cfg) == fields["setting_id"] == setting_id_of(stored)
        assert entry_id(cfg) == fields["entry_id"] == entry_id_of(stored)
    assert setting_id(cfgs[0]) != setting_id(cfgs[1]) and entry_id(cfgs[0]) == entry_id(cfgs[1])


def test_a_key_yaml_reads_as_a_number_or_boolean_is_one_clear_error(tmp_path):
    """YAML reads ``on:``, ``yes:`` and ``1:`` as keys True and 1; a config or sweep file
    holding one is a user error naming the key (it used to escape as a TypeError from
    ``Model(**data)``)."""
    hint = "is not a string (quote it in YAML: '1', 'on', 'yes')"
    p = tmp_path / "s.yaml"
    p.write_text("name: s\non: [push]\n")
    with pytest.raises(UserError) as e:
        load_sweep(p)
    assert str(e.value) == f"invalid sweep file {p}: key True {hint}"
    with pytest.raises(UserError) as e:
        parse_run_config({**tiny_run(), 5: 1})
    assert str(e.value) == f"invalid config: key 5 {hint}"
    with pytest.raises(UserError) as e:
        parse_run_config(tiny_run(arch={1: 2}))
    assert str(e.value) == f"invalid config: arch: key 1 {hint}"


def test_task_setting_label_shows_the_knobs_that_differ_from_the_defaults(monkeypatch):
    import tasks.registry
    from tasks import get_task_class
    from tasks.base import Task, TaskConfig

    defaults = get_task_class("mqar").Config()
    cfg = parse_run_config(tiny_run(task={"params": {"num_pairs": defaults.num_pairs, "seq_len": 32,
                                                     "vocab_size": 64, "n_train": 7}}))
    assert defaults.seq_len != 32 and defaults.vocab_size != 64  # so that both differ
    ood = cfg.task.params["ood_seq_len"]  # follows seq_len when not given, so it differs too
    assert ood != defaults.ood_seq_len
    # data sizes (n_train) and knobs at their default (num_pairs, power_a, ...) left out
    assert cfg.task.setting_label == f"mqar(ood_seq_len={ood},seq_len=32,vocab_size=64)"
    assert parse_run_config({"task": {"name": "mqar"}}).task.setting_label == "mqar"

    # a plugin task whose knob has no default: every knob is shown (no defaults to compare with)
    class RequiredConfig(TaskConfig):
        k: int

    class RequiredTask(Task):
        Config = RequiredConfig

    RequiredTask.name = "required_probe"
    monkeypatch.setitem(tasks.registry.TASKS._items, "required_probe", RequiredTask)
    cfg = parse_run_config(tiny_run(task={"name": "required_probe", "params": {"k": 3}}))
    assert cfg.task.setting_label == "required_probe(k=3)"


def test_cuda_without_a_gpu_is_refused_with_the_fix(monkeypatch):
    """check_device names what it checks: the caller's config (``where``), or "config" when
    called without one, as train's pick_device does."""
    import torch

    from harness.config import check_device
    from harness.train import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tail = ("device is cuda but CUDA is not available on this machine; use device cpu "
            "(`device: cpu` in a file, `--set device=cpu` for train), or auto to take a GPU only where there is one")
    for call, where in ((lambda: check_device("cuda"), "config"), (lambda: pick_device("cuda"), "config"),
                        (lambda: check_device("cuda", "run 2 of sweep 'g'"), "run 2 of sweep 'g'")):
        with pytest.raises(UserError) as e:
            call()
        assert str(e.value) == f"invalid {where}: {tail}"
    check_device("cpu")
    check_device("auto")  # auto never needs a GPU
