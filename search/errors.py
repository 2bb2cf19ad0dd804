"""User-facing errors: one line naming the file, the key path, the rule, the bad value and the fix.

The CLI prints ``str(error)`` and exits with code 2; no traceback is shown for these. They pickle and copy intact
(Ray copies a trial's exception to the driver), so a trial that fails on a user mistake shows its real line.

Example:
    >>> import pickle
    >>> error = SpecError("sweep.yaml", "run_cap", "must be >= 1, got 0")
    >>> str(pickle.loads(pickle.dumps(error)))
    'sweep.yaml: run_cap: must be >= 1, got 0'
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad spec, bad data, unknown name). Printed as one line, exit code 2."""

    exit_code = 2


class _Located(UserError):
    """A user error located in a file and a key path."""

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}: " if key else f"{file}: "
        # One line whatever the YAML held: a key or value with a line break shows it escaped.
        super().__init__((where + message).replace("\r", "\\r").replace("\n", "\\n"))

    def __reduce__(self):  # pickle and copy rebuild it from its three parts, not from the joined line
        return type(self), (self.file, self.key, self.message)


class SpecError(_Located):
    """A search-space / sweep YAML file is invalid.

    Example: ``spaces/beam.yaml: parameters.length_penalty.min: must be < max, got min=2.0 max=1.0``
    """


class DataError(_Located):
    """A data file or data section is unusable (missing file, missing field, empty split, unequal lengths)."""


def os_error_behind(error: BaseException | None) -> OSError | None:
    """The OSError with an errno (full disk, permission denied, ...) behind an error, through its causes, or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def os_error_line(error: OSError, default_path: object = "search") -> str:
    """``PATH: what went wrong (errno N)``."""
    return f"{error.filename or default_path}: {error.strerror or error} (errno {error.errno})"


class RunError(Exception):
    """A sweep or an OS operation failed, not through a user mistake: one line, exit code 1."""

    exit_code = 1


class Interrupted(Exception):
    """A sweep stopped by Ctrl-C or SIGTERM before it finished: exit code 130 and the line that resumes it."""

    exit_code = 130

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        super().__init__(f"interrupted; the state is saved; continue with `search resume {run_dir}`")

    def __reduce__(self):
        return type(self), (self.run_dir,)
