"""Models: the shared causal LM backbone, sequence mixers and checkpoints.

Importing this package registers the built-in mixers.
"""

from models.backbone import LM
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.config import ArchConfig, ArchConfigError
from models.registry import UnknownArchError, get_mixer, mixer_names, register_mixer

__all__ = [
    "LM", "ArchConfig", "ArchConfigError", "CheckpointError", "UnknownArchError",
    "get_mixer", "load_checkpoint", "mixer_names", "register_mixer", "save_checkpoint",
]
