"""manage.py run_worker: a real Celery worker for all queues, with the sweeper, for local use."""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Start a Celery worker on the gpu and default queues (one process, --pool=solo), with "
        "Celery beat inside it for the sweeper that re-sends stuck training steps."
    )

    def add_arguments(self, parser):
        parser.add_argument("--queues", default="gpu,default")
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--no-beat", action="store_true", help="Without the sweeper.")

    def handle(self, queues: str, loglevel: str, no_beat: bool, **options):
        argv = [sys.executable, "-m", "celery", "-A", "rlhf_worker", "worker"]
        argv += ["-Q", queues, "--pool=solo", "--concurrency=1", f"--loglevel={loglevel}"]
        if not no_beat:
            settings.ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            argv += ["--beat", f"--schedule={settings.ARTIFACTS_DIR / 'celerybeat-schedule'}"]
        self.stdout.write(" ".join(argv[1:]))
        sys.stdout.flush()
        os.execv(sys.executable, argv)  # noqa: S606 (our own interpreter, fixed arguments)
