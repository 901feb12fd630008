import json

import pytest
import torch

from models import LM, ArchConfig, CheckpointError, get_mixer, load_checkpoint, mixer_names, save_checkpoint
from models.mixers.gated import GATE_BIAS
from models.registry import UnknownArchError

ZOO = ["transformer", "nope", "sliding", "fox", "path", "path-fox", "momentum", "linear", "deltanet"]


def test_every_architecture_is_registered():
    assert set(ZOO) <= set(mixer_names())
    with pytest.raises(UnknownArchError, match="known architectures: .*transformer"):
        get_mixer("nosuch")


VARIANTS = [(n, {}) for n in ZOO] + [
    ("deltanet", {"conv_size": 0, "feature_map": "identity", "value_silu": False, "output_norm": False}),
    ("deltanet", {"conv_size": 2, "output_gate": True}),
    ("path", {"w_silu": False, "conv_size": 5}),
]


@pytest.mark.parametrize("name, options", VARIANTS)
def test_mixers_are_causal(name, options):
    """Changing the token at t never changes an output before t, and does change the output at t."""
    torch.manual_seed(0)
    m = LM(ArchConfig(name=name, d_model=32, n_layers=2, n_heads=2, options=options), 50).double().eval()
    x = torch.randint(0, 50, (2, 23))
    for t in (1, 9, 15):  # one token at a time: a conv reaching forward would show here
        y = x.clone()
        y[:, t] = (y[:, t] + 7) % 50
        with torch.no_grad():
            a, b = m(x), m(y)
        assert torch.allclose(a[:, :t], b[:, :t], atol=1e-10), t
        assert not torch.allclose(a[:, t], b[:, t]), t


def test_short_conv_sees_exactly_its_window():
    from models.layers import ShortConv

    torch.manual_seed(0)
    conv = ShortConv(6, 4).double()
    x = torch.randn(1, 12, 6, dtype=torch.float64, requires_grad=True)
    conv(x)[0, 7].sum().backward()
    touched = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert touched == [4, 5, 6, 7]  # y_7 reads x_4..x_7 and nothing else


@pytest.mark.parametrize("size", [(32, 2, 2), (64, 2, 2), (128, 2, 4), (256, 4, 8)])
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
    assert torch.allclose(bias, torch.linspace(*GATE_BIAS, 4))
    for name in ("fox", "path-fox"):  # the other init stays reachable, for both gated mixers
        spread = LM(ArchConfig(name=name, d_model=64, n_layers=2, n_heads=4,
                               options={"gate_bias_low": 1.0, "gate_bias_high": 5.0}), 100)
        assert torch.allclose(spread.blocks[1].mixer.gate.proj.bias, torch.tensor([1.0, 7 / 3, 11 / 3, 5.0]))
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
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"init_std\n  Input should be greater than 0"):
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


class _LeavesAMarker:
    """Unpickling this creates the file ``path`` (``open(path, "w")``): the observable trace
    of code run by a loader that unpickles."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _pickle_payload(marker, fmt):
    import io
    import pickle

    obj = {"embed.weight": _LeavesAMarker(marker)}
    if fmt == "pickle":
        return pickle.dumps(obj, protocol=2)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, name", [("torch", "model.safetensors"), ("pickle", "model.safetensors"),
                                       ("torch", "pytorch_model.bin")])
def test_checkpoint_loading_executes_no_code(tmp_path, fmt, name):
    """A pickle smuggled into a checkpoint is refused, never unpickled: in place of the
    weights (torch.save's zip or a bare pickle, config.json's sha256 updated to match), or
    as a PyTorch ``pytorch_model.bin`` instead of them."""
    import io
    import pickle

    from models.checkpoint import file_sha256

    # the payload does act when unpickled, in either format
    control = tmp_path / "control"
    payload = _pickle_payload(control, fmt)
    if fmt == "pickle":
        pickle.loads(payload)
    else:
        torch.load(io.BytesIO(payload), weights_only=False)
    assert control.exists()

    m = LM(ArchConfig(d_model=32, n_heads=2), 40)
    save_checkpoint(m, tmp_path / "ck", {})
    marker = tmp_path / "pwned"
    weights = tmp_path / "ck" / "model.safetensors"
    if name != weights.name:
        weights.unlink()
    (tmp_path / "ck" / name).write_bytes(_pickle_payload(marker, fmt))
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["weights_sha256"] = file_sha256(tmp_path / "ck" / name)  # the attacker rewrote the hash too
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ck")
    assert not marker.exists(), "loading the checkpoint unpickled a file in it"


def test_hourglass_is_wide_narrow_wide():
    from models.mlp import Hourglass, hourglass_dims

    wide, narrow = hourglass_dims(128, 4.0)
    assert wide == 256 and narrow < wide
    block = LM(ArchConfig(d_model=128, mlp="hourglass"), 10).blocks[0].mlp
    assert isinstance(block, Hourglass) and block.down.out_features == narrow


@pytest.mark.parametrize("init_std", [0.2, 0.002])
def test_hourglass_follows_init_std(init_std):
    """Every hourglass weight is drawn at arch.init_std, the output side at init_std / sqrt(2 n_layers)."""
    torch.manual_seed(0)
    mlp = LM(ArchConfig(d_model=128, n_layers=2, mlp="hourglass", init_std=init_std), 10).blocks[0].mlp
    out_std = init_std / 2  # sqrt(2 * 2 layers)
    want = {"inp": init_std, "down": init_std, "up": out_std, "out": out_std}
    for name, std in want.items():
        w = getattr(mlp, name).weight
        assert w.numel() >= 4096, name  # enough draws for a 10% bound to be many standard errors wide
        assert w.std().item() == pytest.approx(std, rel=0.1), name


COUNT_CASES = ([(n, m, {}) for n in ZOO for m in ("swiglu", "relu", "none", "hourglass")] + [
    (n, "swiglu", opts) for n, opts in VARIANTS if opts] + [
    ("momentum", "swiglu", {"learnable": False}),
])


@pytest.mark.parametrize("name, mlp, options", COUNT_CASES)
@pytest.mark.parametrize("layout", [dict(), dict(tie_embeddings=False, norm="none", n_layers=3, mlp_ratio=2.5)])
def test_param_count_from_the_config_is_exact(name, mlp, options, layout):
    from models.backbone import param_count

    cfg = ArchConfig(**{"name": name, "mlp": mlp, "d_model": 32, "n_heads": 2, "n_layers": 2,
                        "options": options, **layout})
    assert param_count(cfg, 37) == LM(cfg, 37).num_params()
    mixers = sum(p.numel() for b in LM(cfg, 37).blocks for p in b.mixer.parameters())
    assert param_count(cfg, 37, mixers=False) == LM(cfg, 37).num_params() - mixers  # the floor, no mixer built


def test_param_count_of_a_huge_config_allocates_nothing():
    from models.backbone import param_count

    n = param_count(ArchConfig(d_model=10**7, n_layers=1000, n_heads=2), 10**6)
    assert n > 10**17  # about 12 d^2 per layer; built on the meta device, so no memory is touched


def _deltanet(**options):
    from models.mixers.gated import DeltaNet

    return DeltaNet(32, 2, get_mixer("deltanet").Options(**options)).double()


def test_deltanet_is_the_paper_layer_by_default():
    opts = ArchConfig(name="deltanet").resolved().options
    assert (opts["conv_size"], opts["feature_map"], opts["value_silu"], opts["output_norm"]) == (4, "silu", True, True)
    torch.manual_seed(0)
    paper, bare = _deltanet(), _deltanet(conv_size=0, feature_map="identity", value_silu=False, output_norm=False)
    assert paper.conv.conv.weight.shape == (96, 1, 4) and bare.conv is None and bare.norm is None
    bare.load_state_dict(paper.state_dict(), strict=False)  # same projections and beta
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    assert not torch.allclose(paper(x), bare(x), atol=1e-6)


def test_deltanet_conv_sits_on_the_projections():
    """With the conv set to the identity filter, the conv variant equals the variant without it."""
    torch.manual_seed(0)
    with_conv, without = _deltanet(), _deltanet(conv_size=0)
    without.load_state_dict(with_conv.state_dict(), strict=False)
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    assert not torch.allclose(with_conv(x), without(x), atol=1e-6)
    with torch.no_grad():
        with_conv.conv.conv.weight.zero_()
        with_conv.conv.conv.weight[:, 0, -1] = 1.0
    assert torch.allclose(with_conv(x), without(x), atol=1e-10)


@pytest.mark.parametrize("feature_map", ["silu", "identity"])
def test_deltanet_feature_map_and_output_norm(feature_map):
    def into_out_proj(m, x):
        seen = {}
        m.out.register_forward_hook(lambda mod, inp, out: seen.setdefault("o", inp[0]))
        m(x)
        return seen["o"].view(2, 19, 2, 16)

    torch.manual_seed(0)
    m = _deltanet(feature_map=feature_map)
    bare = _deltanet(feature_map=feature_map, output_norm=False)
    bare.load_state_dict(m.state_dict(), strict=False)
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    o, normed = into_out_proj(bare, x), into_out_proj(m, x)
    # RMSNorm over each head's own dims (eps 1e-5, as flash-linear-attention), not over d_model
    assert torch.allclose(normed, o / (o.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt(), atol=1e-12)
    assert not torch.allclose(normed, o, atol=1e-6)
    other = _deltanet(feature_map="identity" if feature_map == "silu" else "silu")
    other.load_state_dict(m.state_dict())
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    assert not torch.allclose(m(x), other(x), atol=1e-6)


def test_deltanet_option_errors_name_the_fix():
    from models.config import ArchConfigError

    with pytest.raises(ArchConfigError, match="output_gate needs output_norm: true"):
        ArchConfig(name="deltanet", options={"output_gate": True, "output_norm": False}).resolved()
    with pytest.raises(ArchConfigError, match="feature_map"):
        ArchConfig(name="deltanet", options={"feature_map": "relu"}).resolved()
    assert ArchConfig(name="deltanet", options={"conv_size": None}).resolved().options["conv_size"] is None


def test_path_w_silu_changes_w_only_through_the_option():
    torch.manual_seed(0)
    a = LM(ArchConfig(name="path", d_model=32, n_heads=2), 40)
    b = LM(ArchConfig(name="path", d_model=32, n_heads=2, options={"w_silu": False}), 40)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x), atol=1e-6)
