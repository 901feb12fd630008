"""Models: the shared causal LM backbone, sequence mixers and checkpoints.

Importing this package registers the built-in mixers.
"""

from archbench.packages import check_kernels_package

check_kernels_package()  # before any op is imported: a namesake `kernels` package gets one clear error

from models.backbone import LM  # noqa: E402
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from models.config import ArchConfig, ArchConfigError  # noqa: E402
from models.registry import UnknownArchError, get_mixer, mixer_names, register_mixer  # noqa: E402

__all__ = [
    "LM", "ArchConfig", "ArchConfigError", "CheckpointError", "UnknownArchError",
    "get_mixer", "load_checkpoint", "mixer_names", "register_mixer", "save_checkpoint",
]
