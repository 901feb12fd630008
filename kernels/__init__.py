"""Pure tensor ops for sequence mixers.

Every op takes ``[batch, time, heads, head_dim]`` tensors, is causal, and dispatches by
device: Triton on CUDA, a chunked torch path on CPU.  Each op's folder also holds a
plain ``reference.py`` used by the tests.  See ``kernels/README.md``.
"""

from kernels.softmax_attention import softmax_attention
from kernels.rope import apply_rope

__all__ = ["softmax_attention", "apply_rope"]

try:  # ops filled in by the architecture-zoo work; absent ones are simply not exported
    from kernels.fox import fox_attention  # noqa: F401

    __all__.append("fox_attention")
except ImportError:  # pragma: no cover
    pass
try:
    from kernels.momentum import momentum_attention  # noqa: F401

    __all__.append("momentum_attention")
except ImportError:  # pragma: no cover
    pass
try:
    from kernels.linear_attention import linear_attention  # noqa: F401

    __all__.append("linear_attention")
except ImportError:  # pragma: no cover
    pass
try:
    from kernels.path import path_attention  # noqa: F401

    __all__.append("path_attention")
except ImportError:  # pragma: no cover
    pass
try:
    from kernels.deltanet import deltanet  # noqa: F401

    __all__.append("deltanet")
except ImportError:  # pragma: no cover
    pass
