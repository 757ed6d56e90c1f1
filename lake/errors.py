"""Public error types: everything Lakeward raises on purpose derives from `LakeError`."""

from catalog.errors import *  # noqa: F403
from catalog.errors import __all__  # noqa: F401
