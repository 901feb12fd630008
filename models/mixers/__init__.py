"""Built-in sequence mixers; importing this package registers them."""

from models.mixers import attention  # noqa: F401
