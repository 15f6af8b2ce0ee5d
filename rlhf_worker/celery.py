"""The Celery app of the workers: `celery -A rlhf_worker worker -Q gpu --pool=solo`.

Its settings (acks late, re-delivery of a killed worker's task, prefetch 1, the broker's
visibility timeout, queues) are the CELERY_* values of labelapp/settings.py.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")

app = Celery("rlhf_worker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["rlhf_worker"])
