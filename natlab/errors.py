"""natlab's errors: one base class; the class decides the exit code, the message is one line.

InputError (exit 2): bad input, nothing was started. RunFailure (exit 1): a stage failed while
running. AnalysisError: one scenario's analysis failed (recorded in its summary entry).
"""
from __future__ import annotations


class NatlabError(Exception):
    """Base of every error natlab raises on purpose; str(exc) is one line."""

    exit_code = 1


class InputError(NatlabError):
    """Bad input (config, scenario, command line, missing tool): nothing was started."""

    exit_code = 2


class RunFailure(NatlabError):
    """A run stage (topology, daemon, capture, agent, impairment) failed."""

    exit_code = 1


class AnalysisError(NatlabError):
    """A run folder could not be analysed (missing or malformed file)."""

    exit_code = 1
