"""Test-only settings: the site, plus a worker that dies right after a ranking is committed.

Never used outside tests/e2e/test_faults.py. The first ranking stored while the file named by
CRASH_ONCE_FILE exists kills its gunicorn worker with os._exit before the response is written,
as a power cut or an OOM kill would between COMMIT and the reply; the file is removed first, so
the respawned worker answers normally.
"""

import os

from labelapp.settings import *  # noqa: F403
from labelapp.settings import MIDDLEWARE

# Innermost: it sees the view's response after the view's transaction committed.
MIDDLEWARE = [*MIDDLEWARE, "tests.e2e.crash_settings.ExitAfterCommittedRanking"]


class ExitAfterCommittedRanking:
    """Exit the process once, after a 201 from the ranking endpoint, before it is sent."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.endswith("/ranking") and response.status_code == 201:
            try:
                os.unlink(os.environ["CRASH_ONCE_FILE"])
            except (KeyError, FileNotFoundError):
                return response  # already crashed once, or not asked to
            os._exit(1)
        return response
