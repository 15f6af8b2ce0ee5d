"""The Celery app of the workers: `celery -A rlhf_worker worker -Q gpu --pool=solo`.

Its settings (acks late, re-delivery of a killed worker's task, prefetch 1, the broker's
visibility timeout, queues) are the CELERY_* values of labelapp/settings.py.
"""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")

app = Celery("rlhf_worker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["rlhf_worker"])


@worker_process_init.connect
def use_torch_threads(**_) -> None:
    """Each worker process runs torch on TORCH_THREADS threads, set before its first step."""
    import torch  # only in the worker processes, never in the web's
    from django.conf import settings

    torch.set_num_threads(settings.TORCH_THREADS)
