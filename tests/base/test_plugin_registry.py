"""The one registry mechanism (:mod:`archbench.registry`) and its one plugin-failure policy."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from archbench.registry import PluginWarning, Registry, load_target
from archbench.validation import format_validation_error
from tests.conftest import ARCHBENCH


class Missing(LookupError):
    pass


def must_be_int(name, obj):
    if not isinstance(obj, int):
        raise TypeError(f"{name} must be an int, got {obj!r}")


def test_add_get_names_and_the_unknown_error_lists_what_is_known():
    reg = Registry("widget", unknown=Missing, hint="see `widgets`")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.names() == ["a", "b"] and "a" in reg and "z" not in reg
    assert reg.get("b") == 2
    with pytest.raises(Missing) as e:
        reg.get("z")
    assert str(e.value) == "unknown widget 'z'; known widgets: a, b (see `widgets`)"


def test_registering_the_same_object_twice_is_a_no_op_and_another_under_a_taken_name_an_error():
    reg = Registry("thing")

    class A:
        pass

    class B:
        pass

    reg.add("x", A)
    reg.add("x", A)
    with pytest.raises(ValueError, match=f"thing 'x' is already registered by {__name__}"):
        reg.add("x", B)
    assert reg.get("x") is A


def test_the_base_check_runs_on_added_and_on_lazily_loaded_objects():
    reg = Registry("number", check=must_be_int)
    with pytest.raises(TypeError, match="must be an int"):
        reg.add("pi", 3.14)
    reg.add_lazy("sep", "os:sep")  # a str, not an int
    with pytest.raises(TypeError, match="sep must be an int"):
        reg.get("sep")


def test_lazy_entries_are_listed_without_importing_and_imported_on_first_get():
    reg = Registry("module")
    reg.add_lazy("walk", "os.path:join")
    reg.add_lazy("never", "no_such_module_archbench_test:thing")
    assert reg.names() == ["never", "walk"]  # listing imports nothing, so the broken one lists too
    assert reg.get("walk") is os.path.join
    with pytest.raises(ModuleNotFoundError):
        reg.get("never")  # asked for by name: the error is the caller's to see
    with pytest.warns(PluginWarning, match=r"the module plugin 'never' \(no_such_module_archbench_test:thing\) "
                                           r"failed to load and is skipped: ModuleNotFoundError"):
        loaded = reg.loaded()  # listing everything: the broken one is skipped with a warning
    assert loaded == {"walk": os.path.join}
    assert "ModuleNotFoundError" in reg.plugin_errors()["never"]


def test_load_target_follows_dotted_attributes():
    assert load_target("os:path.join") is os.path.join
    assert load_target("os.path") is os.path


def test_a_lazy_entry_needs_module_colon_attr():
    with pytest.raises(ValueError, match="'module:attr'"):
        Registry("x").add_lazy("a", "os.path.join")


class Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth: int
    width: int = 1


@pytest.mark.parametrize("data, prefix, expected", [
    ({"depth": "deep"}, (), "depth: Input should be a valid integer, unable to parse string as an integer"),
    ({"depth": 1, "colour": 2}, ("arch",),
     "arch.colour: unknown key (check its spelling against the config reference in README.md)"),
    ({}, (), "depth: Field required"),
    ({"width": "x"}, ("a", 0), "a.0.depth: Field required; a.0.width: Input should be a valid integer, "
                               "unable to parse string as an integer"),
])
def test_one_formatter_for_validation_errors(data, prefix, expected):
    with pytest.raises(ValidationError) as e:
        Knobs(**data)
    assert format_validation_error(e.value, prefix) == expected


# -- a broken plugin in each entry-point group: the same warning, and the command goes on ------

GROUPS = {  # group -> (the command that loads it, what its output must still show)
    "archbench.tasks": (["tasks", "--format", "csv"], "mqar"),
    "archbench.mixers": (["archs", "--d-model", "32", "--format", "csv"], "transformer"),
    "archbench.kernels": (["bench", "--ops", "softmax", "--impls", "sdpa", "--seq-lens", "16", "--shapes",
                           "1x16x1x16", "--rounds", "1", "--no-store", "--quiet", "--format", "csv"], "softmax"),
}
KIND = {"archbench.tasks": "task", "archbench.mixers": "architecture", "archbench.kernels": "kernel"}


def broken_distribution(root: Path, group: str) -> None:
    """An installed (on ``PYTHONPATH``) distribution whose entry point in ``group`` raises on import."""
    dist = root / "brokenplugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\nbroken = brokenplugin_mod:thing\n")
    (root / "brokenplugin_mod.py").write_text("raise ImportError('the plugin needs libfoo 2')\n")


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_broken_plugin_warns_with_its_name_and_error_and_the_command_goes_on(tmp_path, group):
    broken_distribution(tmp_path / "site", group)
    args, shown = GROUPS[group]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.getcwd()]),
           "ARCHBENCH_DB": f"sqlite:///{tmp_path / 'r.db'}"}
    res = subprocess.run([*ARCHBENCH, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert shown in res.stdout
    warning = [ln for ln in res.stderr.splitlines() if "plugin" in ln]
    assert warning == [f"warning: archbench: the {KIND[group]} plugin 'broken' (brokenplugin_mod:thing, entry point "
                       f"group {group}) failed to load and is skipped: ImportError: the plugin needs libfoo 2"], \
        res.stderr


def test_the_warning_is_a_warning_not_an_error_in_process(tmp_path, monkeypatch):
    broken_distribution(tmp_path, "archbench.test_group")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    reg = Registry("gadget", "archbench.test_group")
    reg.add("fine", 1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert reg.names() == ["fine"]
    assert [w.category for w in seen] == [PluginWarning]
    assert reg.plugin_errors() == {"broken": "ImportError: the plugin needs libfoo 2"}


def test_peek_loads_nothing(tmp_path, monkeypatch):
    broken_distribution(tmp_path, "archbench.peek_group")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("gadget", "archbench.peek_group")
    reg.add("fine", 1)
    reg.add_lazy("later", "no_such_module_archbench_test:thing")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a load of the broken entry point would warn, and fail here
        assert reg.peek("fine") == 1 and reg.peek("later") is None and reg.peek("absent") is None
    assert not reg._entry_points_loaded
