"""The one exception type the lab raises for problems a user can fix."""


class LabError(RuntimeError):
    """A lab problem explained in one readable line (not root, missing package, bad subnet...)."""
