"""The sweeper re-sends training steps no worker holds, and only those, to the real Redis."""

import base64
import json
import os
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

import labelapp.queue
from labelapp.models import TrainingRun
from labelapp.services.training import STEP_TASK, resend_stuck_runs

BROKER = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
LONG_AGO = timezone.now() - timedelta(hours=1)


@pytest.fixture
def broker(settings):
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    settings.CELERY_BROKER_URL = BROKER
    labelapp.queue._app = None
    yield client
    labelapp.queue._app = None
    client.flushdb()


def sent_run_ids(client: redis.Redis) -> list[int]:
    """The run ids of the step messages waiting in the `gpu` queue."""
    messages = [json.loads(raw) for raw in client.lrange("gpu", 0, -1)]
    assert all(m["headers"]["task"] == STEP_TASK for m in messages)
    return sorted(json.loads(base64.b64decode(m["body"]))[0][0] for m in messages)


def make_run(round_, status: str, **times) -> TrainingRun:
    run = TrainingRun.objects.create(round=round_, kind="generate", status=status)
    TrainingRun.objects.filter(pk=run.pk).update(**times)
    return run


def test_it_resends_lost_and_abandoned_steps_only(
    labeling_round, broker, settings, django_capture_on_commit_callbacks
):
    settings.TRAINING_RESEND_SECONDS = 600
    settings.TRAINING_STALE_SECONDS = 300
    now = timezone.now()
    lost = make_run(labeling_round, "queued", created_at=LONG_AGO, sent_at=LONG_AGO)
    never_sent = make_run(labeling_round, "queued", created_at=LONG_AGO, sent_at=None)
    abandoned = make_run(
        labeling_round, "running", created_at=LONG_AGO, sent_at=LONG_AGO, heartbeat_at=LONG_AGO
    )
    make_run(labeling_round, "queued", created_at=now, sent_at=now)  # just sent
    make_run(labeling_round, "running", created_at=LONG_AGO, sent_at=LONG_AGO, heartbeat_at=now)
    make_run(labeling_round, "succeeded", created_at=LONG_AGO, sent_at=LONG_AGO)
    make_run(labeling_round, "failed", created_at=LONG_AGO, sent_at=LONG_AGO)

    with django_capture_on_commit_callbacks(execute=True):
        resent = resend_stuck_runs()

    expected = sorted([lost.pk, never_sent.pk, abandoned.pk])
    assert sorted(resent) == expected
    assert sent_run_ids(broker) == expected
    assert TrainingRun.objects.get(pk=lost.pk).sent_at > now


def test_a_resent_step_is_not_sent_again_until_the_resend_delay_passes(
    labeling_round, broker, django_capture_on_commit_callbacks
):
    make_run(labeling_round, "queued", created_at=LONG_AGO, sent_at=LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        assert len(resend_stuck_runs()) == 1
        assert resend_stuck_runs() == []
    assert broker.llen("gpu") == 1
