"""Admin endpoints: rounds, training, exports. Labelers get 403 on all of them."""

from django.db.models import Count
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from labelapp.api.auth import require_admin
from labelapp.api.schemas import Detail, Invalid, RoundOut, TrainIn, TrainingRunOut, TrainOut
from labelapp.models import LabelingRound, TrainingRun
from labelapp.services.agreement import round_agreement
from labelapp.services.errors import InvalidInput
from labelapp.services.exports import FORMATS, comparisons_as_trl_jsonl
from labelapp.services.rounds import round_progress
from labelapp.services.training import start_training

router = Router(tags=["rounds"])
ERRORS = {401: Detail, 403: Detail, 404: Detail, 422: Invalid}


def round_payload(round_: LabelingRound) -> dict:
    """A round with its counts, progress and labeler agreement."""
    counts = round_progress(round_)
    progress = counts.pop("progress")
    return {
        "id": round_.pk,
        "number": round_.number,
        "state": round_.state,
        "k": round_.k,
        "overlap": round_.overlap,
        "policy_version": round_.policy_version.number if round_.policy_version else None,
        "prompts": round_.n_prompts,
        "counts": counts,
        "progress": progress,
        "agreement": round_agreement(round_),
    }


def _rounds():
    return LabelingRound.objects.select_related("policy_version").annotate(
        n_prompts=Count("prompts")
    )


@router.get("/rounds", response={200: list[RoundOut], **ERRORS})
def list_rounds(request: HttpRequest):
    """All rounds, newest first."""
    require_admin(request)
    return Status(200, [round_payload(r) for r in _rounds().order_by("-number")])


@router.get("/rounds/{round_id}", response={200: RoundOut, **ERRORS})
def get_round(request: HttpRequest, round_id: int):
    """One round."""
    require_admin(request)
    return Status(200, round_payload(get_object_or_404(_rounds(), pk=round_id)))


@router.post(
    "/rounds/{round_id}/train", response={202: TrainOut, 400: Detail, 409: Detail, **ERRORS}
)
def train_round(request: HttpRequest, round_id: int, body: TrainIn):
    """Close labeling and start training the round (reward model, then the chosen method)."""
    user = require_admin(request)
    round_ = get_object_or_404(LabelingRound, pk=round_id)
    run = start_training(round_, body.method, dict(body.model_extra or {}), user)
    return Status(202, {"training_run_id": run.pk})


@router.get("/training-runs/{run_id}", response={200: TrainingRunOut, **ERRORS})
def get_training_run(request: HttpRequest, run_id: int):
    """A training run's status, progress and metrics."""
    require_admin(request)
    run = get_object_or_404(TrainingRun.objects.select_related("round"), pk=run_id)
    fields = ("id", "kind", "status", "progress", "metrics", "error")
    times = ("created_at", "started_at", "finished_at")
    payload = {f: getattr(run, f) for f in fields + times}
    return Status(200, {**payload, "round": run.round.number})


@router.get("/rounds/{round_id}/export", response={200: None, **ERRORS})
def export_round(request: HttpRequest, round_id: int, format: str = "trl"):  # noqa: A002
    """The round's comparisons as JSONL `{prompt, chosen, rejected}` (TRL's format), streamed."""
    require_admin(request)
    round_ = get_object_or_404(LabelingRound, pk=round_id)
    if format not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
    response = StreamingHttpResponse(
        comparisons_as_trl_jsonl(round_), content_type="application/jsonl"
    )
    response["Content-Disposition"] = f'attachment; filename="round-{round_.number}-trl.jsonl"'
    return response
