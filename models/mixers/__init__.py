"""Built-in sequence mixers; importing this package registers them."""

from models.mixers import attention, gated  # noqa: F401
