"""Labeler endpoints: next task, submit a ranking, skip."""

from django.http import HttpRequest
from ninja import Router, Status

from labelapp.api.auth import require_labeler
from labelapp.api.schemas import (
    Detail,
    Invalid,
    RankingIn,
    RankingOut,
    SkipIn,
    SkipOut,
    TaskOut,
)
from labelapp.models import Assignment
from labelapp.services.assignment import assign_next, completion_texts, skip_assignment
from labelapp.services.ranking import RankingSubmission, expand_to_comparisons, submit_ranking
from rlhf_worker.training import dialogue

router = Router(tags=["labeling"])
ERRORS = {401: Detail, 403: Detail, 422: Invalid}
# A write: 400 for a body that is not JSON; 404 not yours, 409 conflict, 410 expired.
WRITE_ERRORS = {400: Detail, 404: Detail, 409: Detail, 410: Detail, **ERRORS}


def task_payload(assignment: Assignment) -> dict:
    """An assignment as the labeler sees it: the prompt and its completions as A, B, C, ..."""
    texts = completion_texts(assignment.order)
    return {
        "assignment_id": assignment.pk,
        "round": assignment.round.number,
        "prompt": {
            "id": assignment.prompt_id,
            "text": assignment.prompt.text,
            "messages": dialogue.parse(assignment.prompt.text) or [],
        },
        "completions": [
            {"label": label, "id": cid, "text": texts[cid]}
            for label, cid in zip(assignment.labels(), assignment.order, strict=True)
        ],
        "expires_at": assignment.reserved_until,
    }


@router.get("/tasks/next", response={200: TaskOut, 204: None, **ERRORS})
def next_task(request: HttpRequest):
    """The labeler's next assignment (the same one again until it is submitted or skipped)."""
    assignment = assign_next(require_labeler(request))
    if assignment is None:
        return Status(204, None)
    return Status(200, task_payload(assignment))


@router.post(
    "/assignments/{assignment_id}/ranking",
    response={200: RankingOut, 201: RankingOut, **WRITE_ERRORS},
)
def post_ranking(request: HttpRequest, assignment_id: int, body: RankingIn):
    """Rank the assignment's completions best -> worst. The same body again answers 200."""
    submission = RankingSubmission(**body.dict())
    ranking, created = submit_ranking(require_labeler(request), assignment_id, submission)
    # The pairs were written with the ranking, in the same transaction: count them, don't query.
    comparisons = len(expand_to_comparisons(ranking.order, ranking.tied))
    payload = {"ranking_id": ranking.pk, "comparisons": comparisons}
    return Status((201 if created else 200), payload)


@router.post(
    "/assignments/{assignment_id}/skip",
    response={200: SkipOut, **WRITE_ERRORS},
)
def post_skip(request: HttpRequest, assignment_id: int, body: SkipIn):
    """Give the assignment back with a reason; it goes to another labeler."""
    assignment = skip_assignment(require_labeler(request), assignment_id, body.reason)
    return Status(200, {"assignment_id": assignment.pk, "state": assignment.state})
