"""The operator commands' exit codes, one meaning each so scripts and runbooks can branch on them."""

OK = 0  # everything asked for was done (including "nothing to do")
PARTIAL = 1  # some items failed or a source could not be read: the summary says which
USAGE = 2  # bad arguments or configuration: nothing was done


class UsageError(Exception):
    """A problem with what the operator asked for; printed without a traceback, exit code USAGE."""
