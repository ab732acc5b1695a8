"""Search spaces declared in a file (``--space-file FILE``): named slots, each with its choices.

Modules: ``file`` (reading and checking the TOML space file), ``rules`` (the constraints
between slots: small expressions, parsed, never evaluated as Python) and ``space``
(``DeclaredSpace``, the space such a file declares). docs/spaces.md is the reference of the format.
"""

from evaluator.spaces.declared.file import SpaceFile, SpaceFileError, load_space_file
from evaluator.spaces.declared.space import DeclaredSpace, describe_value

__all__ = ["DeclaredSpace", "SpaceFile", "SpaceFileError", "describe_value", "load_space_file"]
