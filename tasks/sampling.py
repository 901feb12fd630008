"""Vectorised sampling helpers shared by the probes (no Python loop per example).

Every helper draws only from the generator it is given, so a probe that calls them in a
fixed order produces the same tensors in any process.
"""

from __future__ import annotations

import math

import torch


def _later_duplicates(x: torch.Tensor) -> torch.Tensor:
    """``[n, k]`` bool: True where an entry equals an entry to its left in the same row.

    Depends only on the equality pattern and the positions, never on the values
    themselves, which is what keeps :func:`distinct_integers` exactly uniform.
    """
    n, k = x.shape
    if k <= 16:
        dup = torch.zeros(n, k, dtype=torch.bool)
        for j in range(1, k):  # a loop over columns, never over examples
            dup[:, j] = (x[:, :j] == x[:, j : j + 1]).any(dim=1)
        return dup
    # stable sort: equal values keep their left-to-right order, so the later copies
    # are the ones marked
    s, idx = x.sort(dim=1, stable=True)
    d = torch.zeros(n, k, dtype=torch.bool)
    d[:, 1:] = s[:, 1:] == s[:, :-1]
    return torch.zeros_like(d).scatter_(1, idx, d)


def distinct_integers(g: torch.Generator, n: int, k: int, low: int, high: int) -> torch.Tensor:
    """``[n, k]`` integers from ``[low, high)``, distinct within each row, in random order.

    Every ordered k-tuple of distinct values is equally likely.  Three regimes, chosen by
    the density ``k / m`` (``m = high - low``), all exact:

    - ``k > m / 2``: a random permutation's prefix.
    - ``k > m / 32``: i.i.d. uniform draws, keeping the first ``k`` distinct values in
      order of first appearance (this *is* sequential sampling without replacement);
      first appearances are found with one per-row table of size ``m``.  The few rows
      that drew fewer than ``k`` distinct values are drawn again.
    - sparser: draws with replacement, then redraws only the entries that repeat a value
      to their left, until no row repeats.

    The last two rules look only at which positions hold equal values, so they commute
    with any relabelling of the values; the result is therefore uniform over distinct
    tuples (and a row drawn again is still uniform).
    """
    m = high - low
    if k > m:
        raise ValueError(f"cannot draw {k} distinct values from a range of {m}")
    if k == 0 or n == 0:
        return torch.empty(n, k, dtype=torch.long)
    if 2 * k > m:
        return torch.rand(n, m, generator=g).argsort(dim=1)[:, :k] + low
    if 32 * k > m:
        return _first_distinct(g, n, k, m) + low
    x = torch.randint(low, high, (n, k), generator=g)
    rows = torch.arange(n)
    sub = x
    while True:
        dup = _later_duplicates(sub)
        bad = dup.any(dim=1)
        if not bool(bad.any()):
            return x
        rows, sub, dup = rows[bad], sub[bad], dup[bad]
        sub[dup] = torch.randint(low, high, (int(dup.sum()),), generator=g)
        x[rows] = sub


def _first_distinct(g: torch.Generator, n: int, k: int, m: int) -> torch.Tensor:
    """``[n, k]``: the first ``k`` distinct values of i.i.d. uniform draws from ``[0, m)``."""
    # draws needed for k distinct values on average, plus a margin of a few deviations
    mean = -m * math.log1p(-k / m)
    kp = int(mean + 4 * math.sqrt(mean) + 4)
    small = torch.int16 if kp < 32_000 else torch.int32
    out = torch.empty(n, k + 1, dtype=torch.long)   # column k collects the unused draws
    rows = torch.arange(n)
    first_pass = True
    while rows.numel():
        r = rows.numel()
        x = torch.randint(0, m, (r, kp), generator=g)
        ar = torch.arange(kp, dtype=small).expand(r, kp)
        first = torch.full((r, m), kp, dtype=small).scatter_reduce_(1, x, ar, "amin")
        is_first = first.gather(1, x) == ar
        slot = is_first.cumsum(dim=1)                # rank among first appearances, from 1
        ok = slot[:, -1] >= k
        slot = torch.where(is_first & (slot <= k), slot - 1, k)
        if first_pass:
            out.scatter_(1, slot, x)
            first_pass = False
        else:
            out[rows[ok]] = torch.empty(r, k + 1, dtype=torch.long).scatter_(1, slot, x)[ok]
        rows = rows[~ok]
    return out[:, :k]


def weighted_without_replacement(g: torch.Generator, n: int, k: int,
                                 log_weights: torch.Tensor) -> torch.Tensor:
    """``[n, k]`` indices into ``log_weights`` drawn without replacement.

    Each row is distributed exactly as ``k`` successive draws, each proportional to the
    weights of the indices not drawn yet, in the order of the draws.  Implemented as
    exponential races (Efraimidis–Spirakis, equivalent to Gumbel top-k): index ``i`` gets
    the key ``E_i / w_i`` with ``E_i ~ Exp(1)``; the ``k`` smallest keys, smallest first,
    are the draws.  We keep ``log(U_i) / w_i = -E_i / w_i`` and take the ``k`` largest.
    """
    inv_w = torch.exp(-(log_weights - log_weights.max())).float()
    keys = torch.rand(n, log_weights.numel(), generator=g).clamp_(min=1e-38).log_().mul_(inv_w)
    return keys.topk(k, dim=1).indices


def sorted_uniform_ints(g: torch.Generator, n: int, k: int, high: torch.Tensor | int) -> torch.Tensor:
    """``[n, k]`` non-decreasing integers, each row an i.i.d. uniform sample from
    ``[0, high]`` (inclusive) sorted ascending; ``high`` is an int or an ``[n]`` tensor.

    Used for "stars and bars" placement: ``k`` blocks among ``high`` filler tokens.
    """
    h = torch.as_tensor(high, dtype=torch.long)
    u = torch.rand(n, k, generator=g, dtype=torch.float64)
    x = (u * (h.view(-1, 1) + 1).double()).long() if h.dim() else (u * (int(h) + 1)).long()
    return x.sort(dim=1).values


def skip_values(r: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """Map ``r`` from ``[0, M - s)`` onto ``[0, M)`` minus the row's ``excluded`` values.

    ``excluded`` is ``[n, s]``, distinct and sorted ascending within each row; ``r`` is
    ``[n, T]``.  The map is a bijection onto the allowed values, so a uniform ``r`` gives
    a uniform value that avoids the excluded ones.
    """
    s = excluded.shape[1]
    # the j-th excluded value (0-based) is skipped once r + j reaches it
    thresh = excluded - torch.arange(s, dtype=excluded.dtype)
    return r + torch.searchsorted(thresh.contiguous(), r.contiguous(), right=True)


def uniform_excluding(g: torch.Generator, T: int, V: int, excluded: torch.Tensor,
                      table_budget: int = 1 << 24) -> torch.Tensor:
    """``[n, T]`` tokens uniform over ``[0, V)`` minus the row's ``excluded`` values
    (``[n, s]``, distinct within each row, ``s < V``).

    Each row's allowed values are listed from a membership table of size ``V`` and
    indexed by uniform draws from ``[0, V - s)``; rows are processed in chunks of at most
    ``table_budget`` table entries.
    """
    n, s = excluded.shape
    out = torch.empty(n, T, dtype=torch.long)
    rows_per_chunk = max(1, table_budget // V)
    for r0 in range(0, n, rows_per_chunk):
        ex = excluded[r0 : r0 + rows_per_chunk]
        r = ex.shape[0]
        banned = torch.zeros(r, V, dtype=torch.bool).scatter_(1, ex, True)
        # allowed value v is the (v - #banned values <= v)-th allowed one; banned values
        # are sent to a spare last column
        rank = torch.arange(V) - banned.cumsum(dim=1)
        rank.masked_fill_(banned, V - s)
        values = torch.empty(r, V - s + 1, dtype=torch.long).scatter_(1, rank, torch.arange(V).expand(r, V))
        pick = torch.randint(0, V - s, (r, T), generator=g)
        torch.gather(values, 1, pick, out=out[r0 : r0 + r])
    return out


def uniform_pick(g: torch.Generator, allowed: torch.Tensor) -> torch.Tensor:
    """``[k]``: for each row of ``allowed`` (``[k, V]`` bool), the index of an entry drawn
    uniformly among its True entries (0 for a row with none)."""
    u = torch.rand(allowed.shape, generator=g)
    return u.masked_fill_(~allowed, -1.0).argmax(dim=1)


_P = 2_147_483_629  # a prime below 2**31: products of two residues fit in int64


def mix_hash(x: torch.Tensor, salt: int = 0) -> torch.Tensor:
    """A fixed, platform-independent integer hash of non-negative int64 ``x`` into
    ``[0, 2**31)`` (modular multiply-add rounds with xor-shifts; never overflows int64)."""
    h = (x % _P + salt % _P) % _P
    for a, b in ((1_103_515_245, 12_345), (69_069, 1), (1_664_525, 1_013_904_223)):
        h = (h * a + b) % _P
        h = h ^ (h >> 13)
    return h
