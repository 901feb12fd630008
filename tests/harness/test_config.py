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
    with pytest.raises(UserError, match=".*") as e:
        parse_run_config(tiny_run(**bad))
    assert needle in str(e.value)


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
