"""PaTH attention, chunked, in plain torch (the CPU path and the GPU autograd helper).

Notation (one batch-head; ``C`` = chunk size, chunk ``n`` holds positions ``nC .. nC+C-1``).
``H_t = I - beta_t w_t w_t^T`` and every product below runs with later positions on the left.

**Within a chunk** the product ``H_{C-1} ... H_0`` has the compact WY (UT) form::

    H_{C-1} ... H_0 = I - W^T A W,    A = (I + strict_tril(diag(beta) W W^T))^{-1} diag(beta)

with ``W`` the chunk's ``[C, D]`` rows ``w_t`` and ``A`` lower triangular (one ``C x C``
unit-triangular solve).  Because ``A`` is triangular, the product over any contiguous
sub-range ``(j, i]`` of the chunk uses the matching sub-block of the same ``A``, so one
``A`` per chunk gives every partial product:

* ``qh_i = H_{n0} ... H_i q_i``  -- query pulled back to the start of its chunk
  (``qh = Q - (tril(Q W^T) A) W``);
* ``kh_j = H_{n1} ... H_{j+1} k_j`` -- key pushed to the end of its chunk
  (``kh = K - (A strict_tril(W K^T))^T W``);
* intra-chunk logits ``q_i^T H_i ... H_{j+1} k_j = (Q K^T - tril(Q W^T) A strict_tril(W K^T))_ij``;
* the whole-chunk matrix ``P_n = I - W^T A W`` (``D x D``).

**Across chunks** the logit of query ``i`` (chunk ``a``) and key ``j`` (chunk ``b < a``) is
``qh_i^T P_{a-1} ... P_{b+1} kh_j``.  The core walks key chunks from last to first keeping
``G_b``: the rows ``qh_i^T P_{a-1} ... P_{b+1}`` for every query after chunk ``b``.  Moving
one chunk left is a single batched matmul, ``G_{b-1} = [qh_b ; G_b P_b]`` (fused with the
logits ``G_b kh_b^T`` into one ``G_b [kh_b^T | P_b]``), and the softmax is accumulated
online (FlashAttention style) over these column blocks.  So the work is ``T / C``
sequential steps, each a matmul over all later queries; nothing ``T x T x D x D`` is
ever formed and only ``[T - bC, C]`` logits exist at a time.

The backward (:class:`_PathCore`) walks the chunks the other way, recomputing each logit
block from the saved ``G_b`` (``O(T^2 D / C)`` floats, the only super-linear memory) and
the saved row log-sum-exp, and carries ``dG`` back through ``G_{b-1} = [qh_b ; G_b P_b]``.
The intra-chunk part (``qh``, ``kh``, ``P``, intra-chunk logits) is ordinary batched torch
code differentiated by autograd.

The FoX gate ``sum_{s=j+1..i} log_f_s = c_i - c_j`` (``c`` the cumulative sum) is added
to the logits unscaled.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

from kernels.chunking import from_chunks, to_chunks


class Workspace:
    """Buffers kept from one call to the next (no-grad calls only, one per thread).

    A CPU tensor of a few MiB is a fresh ``mmap`` under glibc's default malloc, so an op that
    allocates its temporaries anew on every call page-faults them in every time: the chunked
    forward at T=1024 took ~2,600 minor faults per call in a plain script (about a fifth of
    its time) and ~130 in the archbench CLI, which tunes malloc for the whole process
    (:mod:`kernels.cpu_memory`).  A library cannot tune its user's process, so without
    gradients the temporaries live here and are reused while the shapes repeat; a call at
    another shape replaces them.  :func:`release_workspace` frees them.  With gradients every
    intermediate is saved for the backward anyway and nothing is kept.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers.values())


_local = threading.local()


def workspace() -> Workspace:
    """This thread's :class:`Workspace`."""
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = Workspace()
    return ws


def release_workspace() -> None:
    """Free this thread's kept buffers (the next no-grad call allocates them again)."""
    _local.ws = None


def _mm(a: torch.Tensor, b: torch.Tensor, ws: Workspace | None, name: str) -> torch.Tensor:
    """``a @ b``, into the workspace buffer ``name`` when there is one."""
    if ws is None:
        return a @ b
    shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    return torch.matmul(a, b, out=ws.get(name, tuple(shape), a))


def to_chunk_pairs(x: torch.Tensor, y: torch.Tensor, n_chunks: int, chunk: int,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """Two ``[B, T, H, D]`` tensors -> ``[B*H, N, 2C, D]`` holding chunk ``n`` of ``x`` then of
    ``y`` (one copy; into ``out`` when given)."""
    b, t, h, d = x.shape
    if out is not None:
        pairs = out.view(b, h, n_chunks, 2, chunk, d)
        full, rem = divmod(t, chunk)
        for i, src in enumerate((x, y)):
            flat = pairs[:, :, :, i]                                   # [B, H, N, C, D] view
            src_h = src.movedim(2, 1)                                  # [B, H, T, D]
            if full:
                flat[:, :, :full].copy_(src_h[:, :, :full * chunk].reshape(b, h, full, chunk, d))
            if rem:
                flat[:, :, full, :rem].copy_(src_h[:, :, full * chunk:])
                flat[:, :, full, rem:].zero_()
        return out
    xy = torch.stack([x, y], dim=1).permute(0, 3, 1, 2, 4)  # [B, H, 2, T, D]
    pad = n_chunks * chunk - t
    if pad:
        xy = F.pad(xy, (0, 0, 0, pad))
    xy = xy.reshape(b, h, 2, n_chunks, chunk, d).transpose(2, 3)
    return xy.reshape(b * h, n_chunks, 2 * chunk, d)


def path_prep(q, k, w, beta, log_f, scale: float, chunk: int, ws: Workspace | None = None, *,
              low_rank: bool = False):
    """Intra-chunk part of PaTH, differentiable by autograd.

    Returns ``qh, kh`` (``[BH, N, C, D]``, ``qh`` already scaled), ``P`` (``[BH, N, D, D]``),
    ``s_diag`` (``[BH, N, C, C]`` intra-chunk logits incl. scale and gate, not yet masked)
    and ``c`` (``[BH, N*C]`` cumulative log gate, or ``None``).  With a :class:`Workspace`
    (no-grad calls only) every large temporary and result lives in its buffers.  With
    ``low_rank`` (no workspace) ``P`` is replaced by ``W, W2 = A W`` (both ``[BH, N, C, D]``,
    ``P = I - W^T W2``), the form the Triton core applies as a rank-``C`` update; the ``D x D``
    product is never formed.
    """
    b, t, h, d = q.shape
    n = math.ceil(t / chunk)
    bh = b * h

    def buf(name: str, *shape: int) -> torch.Tensor | None:
        return None if ws is None else ws.get(name, shape, q)

    # [w ; q] and [w ; k] chunk by chunk, each built with one copy: [BH, N, 2C, D]
    qs = torch.mul(q, scale, out=buf("qs", b, t, h, d))
    wq = to_chunk_pairs(w, qs, n, chunk, out=buf("wq", bh, n, 2 * chunk, d))
    wk_rows = to_chunk_pairs(w, k, n, chunk, out=buf("wk", bh, n, 2 * chunk, d))
    wc, qc = wq.split(chunk, dim=-2)
    kc = wk_rows[..., chunk:, :]
    bc = to_chunks(beta, n, chunk)  # [BH, N, C]; padding has beta = 0 -> H = I

    # one matmul gives W W^T, W K^T, Q W^T and Q K^T
    gram = _mm(wq, wk_rows.mT, ws, "gram")  # [BH, N, 2C, 2C]
    # (split rather than slice: its backward is one cat, not a zero-filled buffer per slice)
    top, bottom = gram.split(chunk, dim=-2)
    ww, wk = top.split(chunk, dim=-1)
    qw, qk = bottom.split(chunk, dim=-1)
    # A = (I + strict_tril(diag(beta) W W^T))^{-1} diag(beta): one unit-triangular solve
    # per chunk (with unitriangular=True the diagonal of the matrix is never read)
    if ws is None:
        a = torch.linalg.solve_triangular(ww * bc[..., :, None], torch.diag_embed(bc), upper=False,
                                          unitriangular=True)
    else:
        diag = buf("diag", bh, n, chunk, chunk).zero_()
        diag.diagonal(dim1=-2, dim2=-1).copy_(bc)
        # into a column-major buffer, the layout LAPACK writes: a row-major ``out`` takes another
        # route and rounds differently from the autograd path
        a = torch.linalg.solve_triangular(torch.mul(ww, bc[..., :, None], out=buf("wwb", bh, n, chunk, chunk)),
                                          diag, upper=False, unitriangular=True, out=buf("a", bh, n, chunk, chunk).mT)
    # X = [A W | A wk];  [tril(Q W^T) ; W^T] X gives every correction term at once
    if ws is None:
        rhs = torch.cat([wc, torch.tril(wk, -1)], dim=-1)           # wk: (w_r . k_j), r > j
    else:
        rhs = buf("rhs", bh, n, chunk, d + chunk)
        rhs[..., :d].copy_(wc)
        rhs[..., d:].copy_(wk).tril_(-1)
    x = _mm(a, rhs, ws, "x")
    if low_rank:  # W and W2 = A W instead of the D x D transition: I - W^T W2, applied as a rank-C update
        qa_w, qa_wk = (torch.tril(qw) @ x).split([d, chunk], dim=-1)
        w2, awk = x.split([d, chunk], dim=-1)
        qh, s_diag, kh = qc - qa_w, qk - qa_wk, kc - awk.mT @ wc
        transition: tuple[torch.Tensor, ...] = (wc, w2)
    else:
        if ws is None:
            lhs = torch.cat([torch.tril(qw), wc.mT], dim=-2)        # qw: (q_i . w_s), s <= i
        else:
            lhs = buf("lhs", bh, n, chunk + d, chunk)
            lhs[..., :chunk, :].copy_(qw).tril_()
            lhs[..., chunk:, :].copy_(wc.mT)
        z_q, z_w = _mm(lhs, x, ws, "z").split([chunk, d], dim=-2)
        qa_w, qa_wk = z_q.split([d, chunk], dim=-1)
        wt_aw, wt_awk = z_w.split([d, chunk], dim=-1)
        eye = torch.eye(d, dtype=q.dtype, device=q.device)
        qh = torch.sub(qc, qa_w, out=buf("qh", bh, n, chunk, d))   # (out=None: a new tensor)
        s_diag = torch.sub(qk, qa_wk, out=buf("s_diag", bh, n, chunk, chunk))
        kh = torch.sub(kc, wt_awk.mT, out=buf("kh", bh, n, chunk, d))
        transition = (torch.sub(eye, wt_aw, out=buf("p_mat", bh, n, d, d)),)

    c = None
    if log_f is not None:
        c = to_chunks(log_f, n, chunk).reshape(b * h, n * chunk).cumsum(-1)
        cc = c.reshape(b * h, n, chunk)
        if ws is None:
            s_diag = s_diag + (cc[..., :, None] - cc[..., None, :])
        else:  # the difference first, as above: c is large where the gate has decayed far
            s_diag.add_(torch.sub(cc[..., :, None], cc[..., None, :], out=buf("gate", bh, n, chunk, chunk)))
    return (qh, kh, *transition, s_diag, c)


def _causal_mask(chunk: int, device) -> torch.Tensor:
    return torch.ones(chunk, chunk, dtype=torch.bool, device=device).tril()


def _schedule(n: int, chunk: int, tile_rows: int):
    """The inter-chunk walk, tiled over query rows.

    Query chunks are grouped into tiles of ``max(1, tile_rows // chunk)`` chunks so that
    one step touches at most ``tile_rows`` rows (cache-sized at long ``T``); tiles are
    independent except that key-side gradients add up.  Returns ``(tiles, total)``: each
    tile is ``(a0, a1, steps)`` for query chunks ``a0 .. a1-1`` with ``steps`` a list of
    ``(blk, lo, off)`` in forward order (key chunk ``blk`` from ``a1 - 2`` down to 0; the
    rows are the query chunks ``lo .. a1-1``; ``off`` is where that step's ``G`` starts in
    the packed buffer of ``total`` rows).
    """
    per_tile = max(1, tile_rows // chunk)
    tiles, total = [], 0
    for a0 in range(0, n, per_tile):
        a1 = min(n, a0 + per_tile)
        steps = []
        for blk in range(a1 - 2, -1, -1):
            lo = max(blk + 1, a0)
            steps.append((blk, lo, total))
            total += (a1 - lo) * chunk
        tiles.append((a0, a1, steps))
    return tiles, total


class _PathCore(torch.autograd.Function):
    """Inter-chunk PaTH + online softmax + values; see the module docstring.

    Inputs: ``qh, kh`` ``[BH, N, C, D]``, ``p_mat`` ``[BH, N, D, D]``, ``s_diag``
    ``[BH, N, C, C]``, ``v`` ``[BH, N, C, Dv]``, ``c`` ``[BH, N*C]`` or ``None``, and the
    row tile size (see :func:`_schedule`).  Output ``[BH, N, C, Dv]``.
    """

    @staticmethod
    def forward(ctx, qh, kh, p_mat, s_diag, v, c, tile_rows):
        save_g = any(ctx.needs_input_grad)
        out, saved = core_forward(qh, kh, p_mat, s_diag, v, c, tile_rows, save_g=save_g)
        if save_g:
            ctx.save_for_backward(kh, p_mat, *saved, v, c, out.reshape(kh.shape[0], -1, v.shape[-1]))
            ctx.tile_rows = tile_rows
        return out

    @staticmethod
    def backward(ctx, d_out):
        kh, p_mat, s_diag, lse, gbuf, v, c, out = ctx.saved_tensors
        bh, n, chunk, d = kh.shape
        dv = v.shape[-1]
        tp = n * chunk
        tiles, _ = _schedule(n, chunk, ctx.tile_rows)
        tile_len = max(a1 - a0 for a0, a1, _ in tiles) * chunk
        d_out = d_out.reshape(bh, tp, dv)
        delta = (d_out * out).sum(-1)  # [BH, Tp]

        # diagonal blocks, all chunks at once
        do_c = d_out.reshape(bh, n, chunk, dv)
        p = torch.exp(s_diag - lse.reshape(bh, n, chunk)[..., None])
        d_v = p.mT @ do_c
        ds_diag = p * (do_c @ v.mT - delta.reshape(bh, n, chunk)[..., None])

        d_qh = torch.zeros_like(kh)
        d_kh = torch.zeros_like(kh)
        d_p = torch.zeros_like(p_mat)
        d_c = torch.zeros_like(c) if c is not None else None
        # y = [dS_blk | dG of the previous step on these rows], in two alternating buffers
        # indexed by query row (relative to the tile), so dG lands where the next step reads
        ybuf = [kh.new_empty(bh, tile_len, chunk + d), kh.new_empty(bh, tile_len, chunk + d)]
        for a0, a1, steps in tiles:
            base, r1 = a0 * chunk, a1 * chunk
            steps = steps[::-1]  # key chunks ascending
            for j, (blk, lo, off) in enumerate(steps):
                r0 = lo * chunk
                g = gbuf[:, off: off + r1 - r0]                   # [BH, R, D]
                y = ybuf[j % 2][:, r0 - base: r1 - base]
                ds = y[..., :chunk]
                p = g @ kh[:, blk].mT
                if c is not None:
                    p += c[:, r0:r1, None] - c[:, None, blk * chunk: (blk + 1) * chunk]
                p = p.sub_(lse[:, r0:r1, None]).exp_()
                do_r = d_out[:, r0:r1]
                d_v[:, blk].baddbmm_(p.mT, do_r)
                torch.matmul(do_r, v[:, blk].mT, out=ds)
                ds.sub_(delta[:, r0:r1, None]).mul_(p)
                if c is not None:
                    d_c[:, r0:r1] += ds.sum(-1)
                    d_c[:, blk * chunk: (blk + 1) * chunk] -= ds.sum(-2)
                nxt = ybuf[(j + 1) % 2][:, r0 - base: r1 - base, chunk:]  # dG of this step
                if j == 0:  # blk == 0: nothing flows in from a previous step
                    d_kh[:, 0] += ds.mT @ g
                    torch.matmul(ds, kh[:, 0], out=nxt)
                else:
                    # y[..., chunk:] holds the gradient of G P_blk for these rows
                    z = y.mT @ g                                          # [BH, C + D, D]
                    d_kh[:, blk] += z[:, :chunk]
                    d_p[:, blk] += z[:, chunk:].mT
                    torch.matmul(y, torch.cat([kh[:, blk], p_mat[:, blk].mT], dim=-2), out=nxt)
                if j + 1 == len(steps) or steps[j + 1][1] > lo:
                    d_qh[:, lo] = nxt[:, :chunk]  # these rows of G were qh_lo itself
        return d_qh, d_kh, d_p, ds_diag, d_v, d_c, None


def core_forward(qh, kh, p_mat, s_diag, v, c, tile_rows: int, *, save_g: bool = False,
                 ws: Workspace | None = None):
    """The inter-chunk walk of :class:`_PathCore` (see the module docstring): returns the output
    ``[BH, N, C, Dv]`` and, with ``save_g``, ``(masked s_diag, lse, gbuf)`` for the backward.
    With a :class:`Workspace` (no gradients) the temporaries are its buffers and ``s_diag``
    (itself a workspace buffer then) is masked in place; the output is always a new tensor."""
    bh, n, chunk, d = qh.shape
    dv = v.shape[-1]
    tp = n * chunk
    mask = _causal_mask(chunk, qh.device)
    s_diag = s_diag.masked_fill(~mask, float("-inf")) if ws is None else s_diag.masked_fill_(~mask, float("-inf"))

    def buf(name: str, *shape: int) -> torch.Tensor:
        return qh.new_empty(shape) if ws is None else ws.get(name, shape, qh)

    # diagonal blocks start the online softmax for every row at once
    m = s_diag.amax(-1)
    p = torch.sub(s_diag, m[..., None], out=buf("p_diag", bh, n, chunk, chunk)).exp_()
    l = p.sum(-1).reshape(bh, tp)
    acc = (p @ v).reshape(bh, tp, dv)
    m = m.reshape(bh, tp)

    # With gradients every G lives in one packed buffer (saved for backward); without,
    # two buffers alternate.
    tiles, total = _schedule(n, chunk, tile_rows)
    tile_len = max(a1 - a0 for a0, a1, _ in tiles) * chunk
    if save_g:
        gbuf = qh.new_empty(bh, total, d)
    else:
        pingpong = [buf("g0", bh, tile_len, d), buf("g1", bh, tile_len, d)]
    s_flat = buf("s", bh * tile_len * chunk)
    for a0, a1, steps in tiles:
        r1 = a1 * chunk
        for i, (blk, lo, off) in enumerate(steps):
            r0 = lo * chunk
            if i == 0:
                g = qh[:, a1 - 1]
                if save_g:
                    gbuf[:, off: off + chunk] = g
            s = torch.matmul(g, kh[:, blk].mT, out=s_flat[: bh * (r1 - r0) * chunk].view(bh, r1 - r0, chunk))
            if blk > 0:
                # G for key chunk blk-1: [qh_blk ; G P_blk] (qh_blk only if in the tile)
                _, lo2, off2 = steps[i + 1]
                rows2 = r1 - lo2 * chunk
                g_next = (gbuf[:, off2: off2 + rows2] if save_g
                          else pingpong[i % 2][:, :rows2])
                if lo2 < lo:
                    g_next[:, :chunk] = qh[:, blk]
                torch.matmul(g, p_mat[:, blk], out=g_next[:, rows2 - (r1 - r0):])
            if c is not None:
                s += c[:, r0:r1, None] - c[:, None, blk * chunk: (blk + 1) * chunk]
            m_old = m[:, r0:r1]
            m_new = torch.maximum(m_old, s.amax(-1))
            alpha = (m_old - m_new).exp_()
            m_old.copy_(m_new)
            p = s.sub_(m_new[..., None]).exp_()
            l[:, r0:r1].mul_(alpha).add_(p.sum(-1))
            acc[:, r0:r1].mul_(alpha[..., None]).baddbmm_(p, v[:, blk])
            if blk > 0:
                g = g_next

    out = acc.div_(l[..., None])
    lse = m.add_(torch.log(l))
    return out.reshape(bh, n, chunk, dv), ((s_diag, lse, gbuf) if save_g else ())


def path_attention_fast(q, k, v, w, beta, log_f=None, scale=None, chunk_size: int = 64,
                        tile_rows: int = 1024):
    """Chunked PaTH attention; ``[B, T, H, D]`` in and out (see the module docstring).

    ``chunk_size`` is ``C`` (shorter sequences use one chunk of length ``T``); ``tile_rows``
    bounds the query rows one inter-chunk step touches.  Neither changes the result.
    Half-precision inputs are computed in float32 and cast back.
    """
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    in_dtype = q.dtype
    if in_dtype in (torch.float16, torch.bfloat16):
        q, k, v, w, beta = (x.float() for x in (q, k, v, w, beta))
        log_f = log_f.float() if log_f is not None else None
    chunk = max(1, min(chunk_size, t))
    n = math.ceil(t / chunk)
    grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (q, k, v, w, beta, log_f))
    ws = None if grad else workspace()
    qh, kh, p_mat, s_diag, c = path_prep(q, k, w, beta, log_f, scale, chunk, ws)
    v_c = to_chunks(v, n, chunk)
    if ws is None:
        out = _PathCore.apply(qh, kh, p_mat, s_diag, v_c, c, tile_rows)
    else:
        out, _ = core_forward(qh, kh, p_mat, s_diag, v_c, c, tile_rows, ws=ws)
    return from_chunks(out, b, t, h).to(in_dtype)
