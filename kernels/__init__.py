"""Pure tensor ops for sequence mixers.

Every op takes ``[batch, time, heads, head_dim]`` tensors, is causal, and dispatches by
device (:mod:`kernels.dispatch`): Triton on CUDA, a chunked torch path on CPU.  Each op's
folder also holds a plain ``reference.py`` used by the tests, and its ``__init__`` registers
the op with :mod:`kernels.registry` (implementations, input builder, FLOP formula), so
importing this package registers the built-in ops.  See ``kernels/README.md``.
"""

from kernels.deltanet import deltanet
from kernels.fox import fox_attention
from kernels.linear_attention import linear_attention
from kernels.momentum import momentum_attention
from kernels.path import path_attention
from kernels.rope import apply_rope
from kernels.softmax_attention import softmax_attention

__all__ = ["softmax_attention", "apply_rope", "fox_attention", "momentum_attention", "linear_attention",
           "path_attention", "deltanet"]
