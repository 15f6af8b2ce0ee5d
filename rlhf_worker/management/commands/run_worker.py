"""manage.py run_worker: a real Celery worker for all queues, for local use."""

import os
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start a Celery worker on the gpu and default queues (one process, --pool=solo)."

    def add_arguments(self, parser):
        parser.add_argument("--queues", default="gpu,default")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, queues: str, loglevel: str, **options):
        argv = [sys.executable, "-m", "celery", "-A", "rlhf_worker", "worker"]
        argv += ["-Q", queues, "--pool=solo", "--concurrency=1", f"--loglevel={loglevel}"]
        self.stdout.write(" ".join(argv[1:]))
        sys.stdout.flush()
        os.execv(sys.executable, argv)  # noqa: S606 (our own interpreter, fixed arguments)
