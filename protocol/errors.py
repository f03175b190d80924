"""The error every program raises for a problem the user can fix."""


class CommandError(Exception):
    """Printed by ``mnist-live`` as one line naming the problem and what to do; exit status 2."""
