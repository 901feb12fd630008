"""Checkpoints in-process: file_sha256, save_checkpoint's layout and atomic replace,
read_checkpoint_config's refusals, load_checkpoint's checks (config, sha256, tensors) and
their one-line messages."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file

from torch import nn

from models import LM, ArchConfig, CheckpointError, load_checkpoint, register_mixer, save_checkpoint
from models.checkpoint import FORMAT, check_state, file_sha256, read_checkpoint_config

VOCAB = 40


def tiny(**arch) -> LM:
    torch.manual_seed(0)
    return LM(ArchConfig(**{"d_model": 32, "n_heads": 2, "n_layers": 1, **arch}), VOCAB)


@pytest.fixture
def ck(tmp_path):
    """A sound checkpoint of ``tiny()`` at tmp_path/ck."""
    save_checkpoint(tiny(), tmp_path / "ck", {"run_id": "r1", "task": {"name": "mqar"}})
    return tmp_path / "ck"


def rewrite_config(ck, change) -> None:
    cfg = json.loads((ck / "config.json").read_text())
    change(cfg)
    (ck / "config.json").write_text(json.dumps(cfg))


def rewrite_weights(ck, change, keep_sha: bool = False) -> None:
    """Change the stored tensors; the config's sha256 follows unless ``keep_sha``."""
    state = load_file(str(ck / "model.safetensors"))
    change(state)
    save_file(state, str(ck / "model.safetensors"))
    if not keep_sha:
        rewrite_config(ck, lambda c: c.__setitem__("weights_sha256", file_sha256(ck / "model.safetensors")))


def refusal(fn, *args) -> str:
    """The one-line message of the :class:`CheckpointError` that ``fn(*args)`` raises."""
    with pytest.raises(CheckpointError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- file_sha256 -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (5 << 19) + 7])
def test_file_sha256_is_the_sha256_of_the_whole_file(tmp_path, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()


# -- save_checkpoint ---------------------------------------------------------------------

def test_save_writes_weights_and_a_sorted_indented_config(tmp_path):
    m = tiny()
    sha = save_checkpoint(m, tmp_path / "a" / "b" / "ck", {"run_id": "r1", "step": 5})  # parents made
    ck = tmp_path / "a" / "b" / "ck"
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in ck.parent.iterdir()) == ["ck"]  # no temporary left beside it
    assert sha == hashlib.sha256((ck / "model.safetensors").read_bytes()).hexdigest()
    text = (ck / "config.json").read_text()
    cfg = json.loads(text)
    assert cfg == {"format": FORMAT, "arch": m.cfg.model_dump(mode="json"), "vocab_size": VOCAB,
                   "weights_sha256": sha, "run_id": "r1", "step": 5}
    assert text == json.dumps(cfg, indent=2, sort_keys=True)  # stable, diff-friendly bytes
    state = load_file(str(ck / "model.safetensors"))
    assert set(state) == set(m.state_dict())
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


def test_same_model_and_meta_give_identical_files(tmp_path):
    m = tiny()
    save_checkpoint(m, tmp_path / "one", {"b": 1, "a": {"y": 2, "x": 1}})
    save_checkpoint(m, tmp_path / "two", {"a": {"x": 1, "y": 2}, "b": 1})
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_save_replaces_an_old_checkpoint_whole_and_leaves_no_temporaries(tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(tiny(), ck, {"run_id": "old"})
    (ck / "stale.txt").write_text("from the old checkpoint")
    bigger = tiny(d_model=64)
    sha = save_checkpoint(bigger, ck, {"run_id": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors"]
    m, cfg = load_checkpoint(ck)
    assert (cfg["run_id"], cfg["weights_sha256"], m.cfg.d_model) == ("new", sha, 64)


def test_save_clears_the_leftover_of_a_crashed_save(tmp_path):
    ck = tmp_path / "ck"
    leftover = tmp_path / f".ck.tmp-{os.getpid()}"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half-written")
    save_checkpoint(tiny(), ck, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    load_checkpoint(ck)


def test_round_trip_gives_the_same_model_on_the_asked_device(ck):
    m, cfg = load_checkpoint(ck)
    ref = tiny()
    x = torch.randint(0, VOCAB, (2, 7))
    assert torch.equal(m.eval()(x), ref.eval()(x))
    assert (cfg["run_id"], cfg["task"], m.vocab_size) == ("r1", {"name": "mqar"}, VOCAB)
    assert all(p.device.type == "cpu" for p in m.parameters())
    meta, _ = load_checkpoint(ck, device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}


# -- read_checkpoint_config ----------------------------------------------------------------

def test_read_config_of_a_sound_checkpoint(ck):
    cfg = read_checkpoint_config(str(ck))
    assert (cfg["format"], cfg["run_id"], cfg["vocab_size"]) == (FORMAT, "r1", VOCAB)


def test_a_missing_path_is_named(tmp_path):
    assert refusal(read_checkpoint_config, tmp_path / "nowhere") == (
        f"checkpoint {str(tmp_path / 'nowhere')!r} does not exist; pass a directory written by `archbench train`")


@pytest.mark.parametrize("remove", ["config.json", "model.safetensors", "both", "file"])
def test_a_directory_lacking_a_part_is_not_a_checkpoint(ck, remove):
    target = ck
    if remove == "file":
        target = ck / "config.json"  # a file, not a directory
    elif remove == "both":
        (ck / "config.json").unlink()
        (ck / "model.safetensors").unlink()
    else:
        (ck / remove).unlink()
    assert refusal(load_checkpoint, target) == (f"{str(target)!r} is not an archbench checkpoint: "
                                                f"expected a directory holding config.json and model.safetensors")


def test_a_config_that_is_not_json_is_named(ck):
    (ck / "config.json").write_text("{not json")
    msg = refusal(read_checkpoint_config, ck)
    assert msg.startswith(f"{ck / 'config.json'} is not valid JSON (")
    assert msg.endswith("); the checkpoint is damaged, re-train or re-copy it")


@pytest.mark.parametrize("content, needle", [
    ([1, 2], "holds no archbench-checkpoint/1 config (a JSON object)"),
    ("text", "holds no archbench-checkpoint/1 config (a JSON object)"),
    ({"format": "someone-elses/2"}, "has format 'someone-elses/2', expected 'archbench-checkpoint/1'"),
    ({"FORMAT": FORMAT}, "has no format, expected 'archbench-checkpoint/1'"),
    ({}, "has no format, expected 'archbench-checkpoint/1'"),
])
def test_a_config_of_another_kind_is_refused(ck, content, needle):
    (ck / "config.json").write_text(json.dumps(content))
    msg = refusal(read_checkpoint_config, ck)
    assert msg.startswith(f"{ck / 'config.json'} {needle}")
    assert "archbench train" in msg


# -- load_checkpoint: the config ---------------------------------------------------------------

def arch_error(ck, change) -> list[str]:
    """The per-field reasons of the error loading ``ck`` with its arch config changed."""
    rewrite_config(ck, lambda c: c["arch"].update(change))
    head = f"{ck / 'config.json'} does not describe a model this archbench can build ("
    tail = "); re-train or re-copy the checkpoint"
    msg = refusal(load_checkpoint, ck)
    assert msg.startswith(head) and msg.endswith(tail)
    return msg[len(head):-len(tail)].split("; ")


def test_an_arch_config_archbench_cannot_build_is_named_field_by_field(ck):
    d_model, bogus = arch_error(ck, dict(bogus_key=1, d_model="wide"))
    assert d_model.startswith("arch.d_model: Input should be a valid integer")
    assert bogus == "arch.bogus_key: unknown key (check its spelling against the config reference in README.md)"


@pytest.mark.parametrize("key", ["arch", "vocab_size"])
def test_a_config_lacking_a_part_is_named(ck, key):
    rewrite_config(ck, lambda c: c.pop(key))
    assert refusal(load_checkpoint, ck) == (f"{ck / 'config.json'} does not describe a model this archbench can build: "
                                            f"it lacks '{key}'; re-train or re-copy the checkpoint")


def test_a_vocab_size_that_is_no_number_is_named(ck):
    rewrite_config(ck, lambda c: c.__setitem__("vocab_size", "forty"))
    assert refusal(load_checkpoint, ck) == (f"{ck / 'config.json'} does not describe a model this archbench can build: "
                                            f"invalid literal for int() with base 10: 'forty'")


def test_an_arch_config_that_is_no_mapping_is_named(ck):
    rewrite_config(ck, lambda c: c.__setitem__("arch", ["transformer"]))
    msg = refusal(load_checkpoint, ck)
    assert msg.startswith(f"{ck / 'config.json'} does not describe a model this archbench can build: ")
    assert msg.endswith("argument after ** must be a mapping, not list")


# -- load_checkpoint: the weights --------------------------------------------------------------

def test_a_model_larger_than_memory_is_refused_before_it_is_built(ck, monkeypatch):
    import models.checkpoint as checkpoint

    n = tiny().num_params()
    monkeypatch.setattr(checkpoint, "memory_bytes", lambda: 4 * n)  # exactly fits: loads
    load_checkpoint(ck)
    monkeypatch.setattr(checkpoint, "memory_bytes", lambda: 4 * n - 1)
    monkeypatch.setattr(checkpoint, "LM", None)  # building would fail: the refusal comes first
    msg = refusal(load_checkpoint, ck)
    assert f"config.json describes a model of {n:,} parameters" in msg
    assert "more than this machine's" in msg and "arch.d_model" in msg


def test_an_impossible_size_is_refused_on_any_machine(ck):
    rewrite_config(ck, lambda c: c["arch"].__setitem__("d_model", 10**7))
    assert "describes a model of 1,200,000," in refusal(load_checkpoint, ck)


def test_weights_that_differ_from_the_recorded_sha256_are_refused(ck):
    rewrite_weights(ck, lambda s: s["norm.weight"].mul_(2), keep_sha=True)  # a sound file, other numbers
    assert refusal(load_checkpoint, ck) == (f"{ck / 'model.safetensors'} does not match the sha256 in config.json "
                                            f"(truncated or modified); re-train or re-copy it")


def test_without_a_recorded_sha256_the_weights_load_unchecked(ck):
    rewrite_weights(ck, lambda s: s["norm.weight"].fill_(3.0))
    rewrite_config(ck, lambda c: c.pop("weights_sha256"))
    m, cfg = load_checkpoint(ck)
    assert "weights_sha256" not in cfg
    assert torch.equal(m.state_dict()["norm.weight"], torch.full_like(m.state_dict()["norm.weight"], 3.0))


def test_unreadable_weights_are_named(ck):
    (ck / "model.safetensors").write_bytes((ck / "model.safetensors").read_bytes()[:100])
    rewrite_config(ck, lambda c: c.pop("weights_sha256"))
    msg = refusal(load_checkpoint, ck)
    assert msg.startswith(f"cannot read {ck / 'model.safetensors'} (")
    assert msg.endswith("); the file is truncated or damaged")


def test_loaded_weights_are_the_stored_ones(ck):
    rewrite_weights(ck, lambda s: s["embed.weight"].fill_(0.5))
    m, _ = load_checkpoint(ck)
    assert torch.equal(m.state_dict()["embed.weight"], torch.full((VOCAB, 32), 0.5))


class _ScaleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_scale: float = 0.0


@register_mixer("test-checks-its-weights", "test only: a mixer whose load hook refuses a scale below min_scale")
class ChecksItsWeights(nn.Module):
    """Test mixer: like a plugin that checks its own weights when loaded, it reports a
    ``scale`` below ``min_scale`` through torch's ``error_msgs`` (torch raises them over
    several lines)."""

    Options = _ScaleOptions

    def __init__(self, d_model, n_heads, options, layer_idx=0, n_layers=1):
        super().__init__()
        self.lin = nn.Linear(d_model, d_model)
        self.scale = nn.Parameter(torch.ones(1))
        self.min_scale = options.min_scale

    def forward(self, x):
        return self.lin(x) * self.scale

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, error_msgs):
        if (state_dict[prefix + "scale"] < self.min_scale).any():
            error_msgs.append(f"{prefix}scale must be at least {self.min_scale},\n"
                              f"\tgot {state_dict[prefix + 'scale'].tolist()}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, error_msgs)


def test_an_error_torch_raises_while_loading_is_one_line(tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(tiny(name="test-checks-its-weights"), ck, {})
    load_checkpoint(ck)  # a positive scale loads
    rewrite_weights(ck, lambda s: s["blocks.0.mixer.scale"].fill_(-1.0))
    assert refusal(load_checkpoint, ck) == (f"{ck / 'model.safetensors'} does not fit its config: Error(s) in loading "
                                            f"state_dict for LM: blocks.0.mixer.scale must be at least 0.0, got [-1.0]")


# -- check_state ----------------------------------------------------------------------------

FIX = "the weights and config.json come from different models or were damaged; re-train or re-copy the checkpoint"


def good_state():
    return {k: v.clone() for k, v in tiny().state_dict().items()}


def check_error(state) -> str:
    return refusal(check_state, state, tiny(), "W")


def test_a_fitting_state_passes():
    assert check_state(good_state(), tiny(), "W") is None
    # other floating dtypes are cast on load: they fit
    assert check_state({k: v.double() for k, v in good_state().items()}, tiny(), "W") is None


def test_missing_tensors_are_named_first_three_sorted():
    state = good_state()
    names = sorted(state)
    for k in names[:1]:
        del state[k]
    assert check_error(state) == f"W lacks tensor(s) {names[0]} of the model in config.json; {FIX}"
    state = good_state()
    for k in names[:3]:
        del state[k]
    assert check_error(state) == f"W lacks tensor(s) {', '.join(names[:3])} of the model in config.json; {FIX}"
    state = good_state()
    for k in names[:5]:
        del state[k]
    assert check_error(state) == (f"W lacks tensor(s) {', '.join(names[:3])} (and 2 more) of the model in "
                                  f"config.json; {FIX}")


def test_missing_is_reported_before_unexpected():
    state = good_state()
    state.pop("norm.weight")
    state["zz.extra"] = torch.zeros(2)
    assert check_error(state).startswith("W lacks tensor(s) norm.weight ")


def test_unexpected_tensors_are_named():
    state = good_state()
    state["b.extra"] = torch.zeros(2)
    state["a.extra"] = torch.zeros(2)
    assert check_error(state) == (f"W holds tensor(s) a.extra, b.extra that the model in config.json "
                                  f"does not have; {FIX}")
    for k in ("c.extra", "d.extra"):
        state[k] = torch.zeros(1)
    assert check_error(state).startswith("W holds tensor(s) a.extra, b.extra, c.extra (and 1 more) that")


def test_a_tensor_of_another_shape_is_named_with_both_shapes():
    state = good_state()
    state["norm.weight"] = torch.zeros(33)
    assert check_error(state) == (f"W: tensor norm.weight has shape [33] but the model in config.json "
                                  f"needs [32]; {FIX}")


def test_the_first_misfit_in_name_order_is_named():
    state = good_state()
    assert list(state)[:2] == ["embed.weight", "blocks.0.norm1.weight"]  # the model's order is not name order
    state["embed.weight"] = torch.zeros(VOCAB + 1, 32)
    state["blocks.0.norm1.weight"] = torch.zeros(31)
    assert check_error(state).startswith("W: tensor blocks.0.norm1.weight has shape [31]")
    state["blocks.0.norm1.weight"] = torch.zeros(32, dtype=torch.int64)
    assert check_error(state).startswith("W: tensor blocks.0.norm1.weight holds torch.int64")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int8])
def test_non_floating_weights_are_named(dtype):
    state = good_state()
    state["norm.weight"] = state["norm.weight"].to(dtype)
    assert check_error(state) == (f"W: tensor norm.weight holds {dtype} but the model in config.json "
                                  f"needs torch.float32; {FIX}")


@pytest.mark.parametrize("damage, needle", [
    (lambda s: s.pop("norm.weight"), "lacks tensor(s) norm.weight"),
    (lambda s: s.__setitem__("extra", torch.zeros(1)), "holds tensor(s) extra"),
    (lambda s: s.__setitem__("norm.weight", torch.zeros(5)), "tensor norm.weight has shape [5]"),
    (lambda s: s.__setitem__("norm.weight", torch.zeros(32, dtype=torch.int32)), "holds torch.int32"),
])
def test_load_checks_the_tensors_against_the_config(ck, damage, needle):
    rewrite_weights(ck, damage)
    msg = refusal(load_checkpoint, ck)
    assert msg.startswith(f"{ck / 'model.safetensors'}") and needle in msg and msg.endswith(FIX)


def test_an_error_about_the_whole_arch_config_names_arch(ck):
    # no field of its own (an empty loc), and without pydantic's "Value error, " prefix
    assert arch_error(ck, dict(d_model=30, n_heads=4)) == ["arch: d_model=30 must be divisible by n_heads=4"]
