import json

import pytest
import torch

from models import LM, ArchConfig, CheckpointError, get_mixer, load_checkpoint, mixer_names, save_checkpoint
from models.registry import UnknownArchError

ZOO = ["transformer", "nope", "sliding", "fox", "path", "path-fox", "momentum", "linear", "deltanet"]


def test_every_architecture_is_registered():
    assert set(ZOO) <= set(mixer_names())
    with pytest.raises(UnknownArchError, match="known architectures: .*transformer"):
        get_mixer("nosuch")


@pytest.mark.parametrize("name", ZOO)
def test_mixers_are_causal(name):
    """Changing a future token never changes an earlier output."""
    torch.manual_seed(0)
    m = LM(ArchConfig(name=name, d_model=32, n_layers=2, n_heads=2), 50).double().eval()
    x = torch.randint(0, 50, (2, 23))
    y = x.clone()
    y[:, 15:] = (y[:, 15:] + 7) % 50
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[:, :15], b[:, :15], atol=1e-10)
    assert not torch.allclose(a[:, 15:], b[:, 15:])


@pytest.mark.parametrize("size", [(64, 2, 2), (128, 2, 4), (256, 4, 8)])
@pytest.mark.parametrize("mlp", ["swiglu", "hourglass"])
def test_sizes_are_matched_within_5_percent(size, mlp):
    d, n_layers, n_heads = size
    counts = {n: LM(ArchConfig(name=n, d_model=d, n_layers=n_layers, n_heads=n_heads, mlp=mlp), 256).num_params(False)
              for n in ZOO}
    base = LM(ArchConfig(name="transformer", d_model=d, n_layers=n_layers, n_heads=n_heads), 256).num_params(False)
    for name, n in counts.items():
        assert abs(n / base - 1) <= 0.05, (name, n, base)


def test_layer_initialisation_survives_model_construction():
    torch.manual_seed(0)
    m = LM(ArchConfig(name="fox", d_model=64, n_layers=2, n_heads=4), 100)
    bias = m.blocks[0].mixer.gate.proj.bias
    assert torch.allclose(bias, torch.linspace(1.0, 5.0, 4))
    p = LM(ArchConfig(name="path", d_model=64, n_layers=2, n_heads=4), 100)
    assert torch.all(p.blocks[1].mixer.householder.beta.bias == 0)  # beta starts at 2 * sigmoid(0) = 1
    conv = p.blocks[0].mixer.householder.conv.weight
    assert (conv[:, 0, -1] - 1).abs().max() < 0.5 and conv[:, 0, 0].abs().max() < 0.5


def test_init_std_scales_plain_weights_only():
    def stds(cfg):
        torch.manual_seed(0)
        m = LM(cfg, 100)
        b0 = m.blocks[0]
        return {"embed": m.embed.weight.std().item(), "head": m.head.weight.std().item(),
                "mlp_up": b0.mlp.up.weight.std().item(), "mlp_down": b0.mlp.down.weight.std().item(),
                "gate_bias": b0.mixer.gate.proj.bias.tolist()}

    kw = dict(name="fox", d_model=128, n_layers=2, n_heads=4, mlp="relu", tie_embeddings=False)
    default, nanda = stds(ArchConfig(**kw)), stds(ArchConfig(**kw, init_std=0.0884))
    assert default["embed"] == pytest.approx(0.02, rel=0.05)
    for name in ("embed", "head", "mlp_up"):
        assert nanda[name] == pytest.approx(0.0884, rel=0.05), name
    assert nanda["mlp_down"] == pytest.approx(0.0884 / 2, rel=0.05)     # std / sqrt(2 n_layers)
    assert nanda["gate_bias"] == default["gate_bias"]                  # the gate keeps its own init
    assert LM(ArchConfig(**kw), 100).embed.weight.std().item() == pytest.approx(0.02, rel=0.05)  # not leaked
    with pytest.raises(ValueError):
        ArchConfig(init_std=0)


def test_options_are_validated():
    from models.config import ArchConfigError

    with pytest.raises(ArchConfigError, match="invalid options for architecture 'momentum'"):
        ArchConfig(name="momentum", options={"gama": 1}).resolved()
    assert ArchConfig(name="sliding").resolved().options["window"] == 32


@pytest.mark.parametrize("name, mlp, n_layers", [("transformer", "swiglu", 2), ("path", "hourglass", 1),
                                                 ("deltanet", "relu", 3), ("fox", "none", 1)])
def test_selected_positions_match_full_logits(name, mlp, n_layers):
    # the last block runs its MLP only at the selected positions: the logits must not change
    m = LM(ArchConfig(name=name, mlp=mlp, n_layers=n_layers, d_model=32, n_heads=2), 40).eval()
    x = torch.randint(0, 40, (3, 17))
    pos = torch.rand(3, 17) > 0.6
    with torch.no_grad():
        assert torch.allclose(m(x)[pos], m(x, pos), atol=1e-6)


def test_checkpoint_round_trip_and_damage(tmp_path):
    torch.manual_seed(0)
    m = LM(ArchConfig(name="path-fox", d_model=32, n_heads=2, tie_embeddings=False), 40)
    sha = save_checkpoint(m, tmp_path / "ck", {"task": {"name": "mqar", "params": {}}, "run_id": "r"})
    m2, meta = load_checkpoint(tmp_path / "ck")
    assert meta["weights_sha256"] == sha and meta["task"]["name"] == "mqar"
    x = torch.randint(0, 40, (2, 9))
    assert torch.equal(m.eval()(x), m2.eval()(x))
    # overwriting is atomic: the old checkpoint is replaced whole
    save_checkpoint(m, tmp_path / "ck", {"run_id": "r2"})
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["run_id"] == "r2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["arch"]["name"] = "nosuch"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not describe a model"):
        load_checkpoint(tmp_path / "ck")


def test_checkpoint_loading_executes_no_code(tmp_path):
    """A pickle smuggled in place of the weights is refused, never unpickled."""
    m = LM(ArchConfig(d_model=32, n_heads=2), 40)
    save_checkpoint(m, tmp_path / "ck", {})
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg.pop("weights_sha256")
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    marker = tmp_path / "pwned"
    torch.save({"x": torch.zeros(1)}, tmp_path / "ck" / "model.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ck")
    assert not marker.exists()


def test_hourglass_is_wide_narrow_wide():
    from models.mlp import Hourglass, hourglass_dims

    wide, narrow = hourglass_dims(128, 4.0)
    assert wide == 256 and narrow < wide
    block = LM(ArchConfig(d_model=128, mlp="hourglass"), 10).blocks[0].mlp
    assert isinstance(block, Hourglass) and block.down.out_features == narrow
