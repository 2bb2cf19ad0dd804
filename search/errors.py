"""User-facing errors: one line naming the file, the key path, the rule, the bad value and the fix.

The CLI prints ``str(error)`` and exits with code 2; no traceback is shown for these.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad spec, bad data, unknown name). Printed as one line, exit code 2."""

    exit_code = 2


class SpecError(UserError):
    """A search-space / sweep YAML file is invalid.

    Example: ``spaces/beam.yaml: parameters.length_penalty.min: must be < max, got min=2.0 max=1.0``
    """

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)


class DataError(UserError):
    """A data file or data section is unusable (missing file, missing field, empty split, unequal lengths)."""

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)
