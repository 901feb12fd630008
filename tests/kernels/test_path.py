"""PaTH attention: the chunked torch path against the plain definition, plus closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import path_attention
from kernels.path.fast import path_attention_fast
from kernels.path.reference import path_attention_ref


def make_inputs(b, t, h, d, *, fox=False, dtype=torch.float64, seed=0, beta=(0.02, 1.98)):
    """Random PaTH inputs; ``beta`` uniform in the given range (default spans (0, 2))."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = randn(b, t, h, d), randn(b, t, h, d), randn(b, t, h, d)
    w = F.normalize(randn(b, t, h, d), dim=-1)
    lo, hi = beta
    bt = lo + (hi - lo) * torch.rand(b, t, h, generator=g, dtype=torch.float64)
    log_f = F.logsigmoid(randn(b, t, h) + 2.0) if fox else None
    xs = [q, k, v, w, bt, log_f]
    return [x.to(dtype) if x is not None else None for x in xs]


def grads(fn, xs, cotangent):
    """Output and gradients of every non-None input (unused inputs get zeros)."""
    xs = [x.detach().clone().requires_grad_() if x is not None else None for x in xs]
    out = fn(*xs)
    used = [x for x in xs if x is not None]
    gs = torch.autograd.grad(out, used, cotangent.to(out.dtype), allow_unused=True,
                             materialize_grads=True)
    return out.detach(), gs


NAMES = ["q", "k", "v", "w", "beta", "log_f"]


def causal_softmax(logits, v):
    t = logits.shape[-1]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    probs = logits.masked_fill(~mask, float("-inf")).softmax(-1)
    return torch.einsum("bhij,bjhd->bihd", probs, v)


@pytest.mark.parametrize("fox", [False, True], ids=["path", "path_fox"])
@pytest.mark.parametrize("t,chunk", [(1, 16), (5, 16), (37, 16), (130, 16), (64, 64), (130, 64)])
def test_fast_matches_reference_float64(t, chunk, fox):
    xs = make_inputs(2, t, 3, 8, fox=fox, seed=t + chunk)
    if t >= 5:  # negative eigenvalues (beta > 1) and near-identity steps both occur
        assert (xs[4] > 1.5).any() and (xs[4] < 0.5).any()
    cot = torch.randn(2, t, 3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_out, ref_g = grads(lambda *a: path_attention_ref(*a), xs, cot)
    out, g = grads(lambda *a: path_attention_fast(*a, chunk_size=chunk), xs, cot)
    torch.testing.assert_close(out, ref_out, atol=1e-9, rtol=1e-9)
    for name, a, b in zip(NAMES, g, ref_g):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=f"grad of {name}")


@pytest.mark.parametrize("fox", [False, True], ids=["path", "path_fox"])
def test_fast_float32_close_to_reference(fox):
    xs64 = make_inputs(2, 100, 2, 32, fox=fox, seed=3)
    xs32 = [x.float() if x is not None else None for x in xs64]
    cot = torch.randn(2, 100, 2, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref_out, ref_g = grads(lambda *a: path_attention_ref(*a), xs64, cot)
    out, g = grads(lambda *a: path_attention_fast(*a, chunk_size=32), xs32, cot)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref_out, atol=2e-5, rtol=1e-4)
    for name, a, b in zip(NAMES, g, ref_g):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-3, msg=f"grad of {name}")


def test_float32_inputs_under_a_float64_default_dtype():
    """``torch.set_default_dtype(torch.float64)`` (common in scientific scripts) must not leak
    into the op: float32 inputs still run in float32, forward and backward."""
    xs64 = make_inputs(1, 20, 2, 8, fox=True, seed=5)
    xs32 = [x.float() for x in xs64]
    cot = torch.randn(1, 20, 2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref_out, ref_g = grads(lambda *a: path_attention_ref(*a), xs64, cot)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out, g = grads(lambda *a: path_attention_fast(*a, chunk_size=8), xs32, cot)
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == torch.float32, out.dtype
    torch.testing.assert_close(out.double(), ref_out, atol=2e-5, rtol=1e-4)
    for name, a, b in zip(NAMES, g, ref_g):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-3, msg=f"grad of {name}")


def test_chunk_size_does_not_change_the_result():
    xs = make_inputs(1, 40, 2, 8, fox=True, seed=5)
    outs = [path_attention_fast(*xs, chunk_size=c) for c in (1, 3, 16, 40, 64)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("fox", [False, True], ids=["path", "path_fox"])
def test_gradcheck(fox):
    xs = make_inputs(1, 6, 2, 4, fox=fox, seed=7)
    xs = [x.requires_grad_() for x in xs if x is not None]
    assert torch.autograd.gradcheck(lambda *a: path_attention_fast(*a, chunk_size=4), xs, fast_mode=True)


def test_beta_zero_is_causal_softmax_attention():
    q, k, v, w, _, _ = make_inputs(2, 50, 2, 16, seed=11)
    beta = torch.zeros(2, 50, 2, dtype=torch.float64)
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * 16 ** -0.5
    torch.testing.assert_close(path_attention(q, k, v, w, beta), causal_softmax(logits, v))
    # a custom scale is applied to q.k only
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * 0.3
    torch.testing.assert_close(path_attention(q, k, v, w, beta, scale=0.3), causal_softmax(logits, v))


def test_beta_zero_with_gate_is_fox_attention():
    q, k, v, w, _, log_f = make_inputs(2, 70, 2, 16, fox=True, seed=12)
    beta = torch.zeros(2, 70, 2, dtype=torch.float64)
    c = log_f.cumsum(1)  # sum_{s=j+1..i} log_f_s = c_i - c_j
    gate = (c[:, :, None, :] - c[:, None, :, :]).permute(0, 3, 1, 2)  # [B, H, i, j]
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * 16 ** -0.5 + gate
    torch.testing.assert_close(path_attention(q, k, v, w, beta, log_f), causal_softmax(logits, v))


@pytest.mark.parametrize("beta_value", [1.0, 2.0])
def test_repeated_direction_closed_form(beta_value):
    """One direction ``w`` everywhere: ``beta = 1`` gives a projection (``P^n = P``),
    ``beta = 2`` a reflection (``R^n = R`` or ``I`` by parity, eigenvalue -1)."""
    b, t, h, d = 1, 45, 2, 8
    q, k, v, _, _, _ = make_inputs(b, t, h, d, seed=13)
    u = F.normalize(torch.randn(h, d, dtype=torch.float64), dim=-1)
    w = u.expand(b, t, h, d).contiguous()
    beta = torch.full((b, t, h), beta_value, dtype=torch.float64)
    dist = torch.arange(t)[:, None] - torch.arange(t)[None, :]  # i - j
    plain = torch.einsum("bihd,bjhd->bhij", q, k)
    q_u = torch.einsum("bihd,hd->bhi", q, u)
    k_u = torch.einsum("bjhd,hd->bhj", k, u)
    along = q_u[..., :, None] * k_u[..., None, :]  # (q.u)(u.k)
    if beta_value == 1.0:
        n_applied = (dist > 0).double()
    else:
        n_applied = 2.0 * (dist % 2 == 1).double()
    logits = (plain - n_applied * along) * d ** -0.5
    expected = causal_softmax(logits, v)
    torch.testing.assert_close(path_attention_fast(q, k, v, w, beta, chunk_size=16), expected)
    torch.testing.assert_close(path_attention_ref(q, k, v, w, beta), expected)


def test_no_grad_forward_matches():
    xs = make_inputs(2, 90, 2, 8, fox=True, seed=17)
    with torch.no_grad():
        a = path_attention_fast(*xs, chunk_size=32)
    xs_g = [x.requires_grad_() for x in xs]
    b = path_attention_fast(*xs_g, chunk_size=32)
    assert b.requires_grad
    # the no-grad call writes into kept buffers (kernels.path.fast.Workspace): the same
    # arithmetic, bit for bit
    torch.testing.assert_close(a, b.detach(), atol=0, rtol=0)


def test_public_op_on_cpu_and_half_precision():
    xs = make_inputs(1, 33, 2, 16, fox=True, seed=19, dtype=torch.float32)
    out = path_attention(*xs)
    torch.testing.assert_close(out, path_attention_fast(*xs))
    assert out.shape == (1, 33, 2, 16)
    out16 = path_attention(*[x.bfloat16() for x in xs])
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), out, atol=0.05, rtol=0.05)


def test_bad_shapes_raise_a_clear_error():
    q, k, v, w, beta, _ = make_inputs(1, 8, 2, 4)
    with pytest.raises(ValueError, match="beta"):
        path_attention(q, k, v, w, beta[:, :4])
    with pytest.raises(ValueError, match="w must have the shape"):
        path_attention(q, k, v, w[..., :2], beta)
    with pytest.raises(ValueError, match="log_f"):
        path_attention(q, k, v, w, beta, log_f=beta[0])


# -- the inter-chunk walk tiled over query rows (tile_rows < T) ------------------------

TILE_T, TILE_CHUNK = 150, 16  # 10 chunks, the last one partial


@pytest.fixture(scope="module", params=[False, True], ids=["path", "path_fox"])
def tiled_case(request):
    """Seeded inputs at ``T = 150`` (10 chunks of 16, the last one 6 long) with the
    reference output and gradients, computed once per gate setting."""
    fox = request.param
    xs = make_inputs(1, TILE_T, 2, 8, fox=fox, seed=23 + fox)
    cot = torch.randn(1, TILE_T, 2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(29))
    ref_out, ref_g = grads(lambda *a: path_attention_ref(*a), xs, cot)
    return xs, cot, ref_out, ref_g


# tile_rows below the chunk (one chunk per tile), equal to it, not a multiple of it (40 ->
# 2 chunks, 50 -> 3, 100 -> 6: tiles of unequal length, a short last tile), and a divisor of
# the chunk count (80 -> 5 chunks, two tiles)
@pytest.mark.parametrize("tile_rows", [1, 16, 40, 50, 80, 100])
def test_fast_with_several_row_tiles_matches_reference(tiled_case, tile_rows):
    from kernels.path.fast import _schedule

    xs, cot, ref_out, ref_g = tiled_case
    n = -(-TILE_T // TILE_CHUNK)
    tiles, _ = _schedule(n, TILE_CHUNK, tile_rows)
    assert len(tiles) == -(-n // max(1, tile_rows // TILE_CHUNK)) >= 2  # really several tiles
    out, g = grads(lambda *a: path_attention_fast(*a, chunk_size=TILE_CHUNK, tile_rows=tile_rows), xs, cot)
    torch.testing.assert_close(out, ref_out, atol=1e-9, rtol=1e-9)
    for name, a, b in zip(NAMES, g, ref_g):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=f"grad of {name} (tile_rows={tile_rows})")
    with torch.no_grad():  # the forward without saved G (two alternating buffers)
        plain = path_attention_fast(*xs, chunk_size=TILE_CHUNK, tile_rows=tile_rows)
    torch.testing.assert_close(plain, ref_out, atol=1e-9, rtol=1e-9)


def test_schedule_covers_every_query_key_chunk_pair_once():
    """Each tile's steps visit, for every query chunk ``a`` in it, each key chunk ``b < a``
    exactly once, and the packed G buffer holds exactly the rows the steps use."""
    from kernels.path.fast import _schedule

    for n in (1, 2, 7, 10):
        for chunk in (4, 16):
            for tile_rows in (1, chunk, 2 * chunk + 3, 3 * chunk, 1024):
                tiles, total = _schedule(n, chunk, tile_rows)
                assert [a for a0, a1, _ in tiles for a in range(a0, a1)] == list(range(n))  # a partition
                pairs, rows = [], 0
                for a0, a1, steps in tiles:
                    assert a1 - a0 <= max(1, tile_rows // chunk)
                    assert [blk for blk, _, _ in steps] == list(range(a1 - 2, -1, -1))
                    for blk, lo, off in steps:
                        assert off == rows
                        rows += (a1 - lo) * chunk
                        pairs += [(a, blk) for a in range(lo, a1)]
                assert total == rows
                assert sorted(pairs) == [(a, b) for a in range(n) for b in range(a)], (n, chunk, tile_rows)


def test_no_grad_calls_reuse_one_workspace_and_never_alias_their_outputs():
    from kernels.path import fast

    fast.release_workspace()
    xs = make_inputs(1, 70, 2, 8, fox=True, seed=23)
    ys = make_inputs(1, 70, 2, 8, fox=True, seed=29)
    with torch.no_grad():
        a = path_attention_fast(*xs, chunk_size=32)
        ws = fast.workspace()
        ptrs = {k: b.data_ptr() for k, b in ws.buffers.items()}
        assert {"gram", "qh", "kh", "s", "g0"} <= set(ptrs) and ws.nbytes > 0
        a_copy = a.clone()
        b = path_attention_fast(*ys, chunk_size=32)   # same shapes: the same buffers again
        assert {k: x.data_ptr() for k, x in fast.workspace().buffers.items()} == ptrs
        torch.testing.assert_close(a, a_copy, atol=0, rtol=0)  # the first result was not overwritten
        assert a.data_ptr() != b.data_ptr()
    torch.testing.assert_close(b, path_attention_ref(*ys), atol=1e-10, rtol=1e-8)
    fast.release_workspace()
    assert fast.workspace().nbytes == 0
    path_attention_fast(*[x.requires_grad_() for x in xs], chunk_size=32)  # with gradients: nothing kept
    assert fast.workspace().nbytes == 0
