"""Expected failures of any stage, with the exit code the `cspine` command turns them into.

One convention everywhere (README, "Exit codes"): 0 success; 1 a check or gate that ran and said no (the
privacy audit flagged images, a release is not covered by its audit, a release folder fails its manifest);
2 bad input or usage (a wrong config key, a missing or malformed input file, a stage run before the stage it
needs); 130 interrupted. An expected failure prints one line naming the file and the problem, never a
traceback. Stage packages subclass these for their own errors.
"""

from __future__ import annotations


class StageError(RuntimeError):
    """Bad input or usage: exit code 2. The message names the file and the problem."""

    exit_code = 2


class GateClosed(StageError):
    """A check ran and refused (audit flagged, release not covered by its audit): exit code 1."""

    exit_code = 1
