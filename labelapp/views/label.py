"""The labeler's pages: the task page, and the posts it makes (rank, skip)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labelapp.access import is_admin, labeler_required
from labelapp.forms import RankingForm, SkipForm
from labelapp.models import FLAG_CHOICES, Assignment
from labelapp.services.assignment import (
    assign_next,
    completion_texts,
    done_in_round,
    own_assignment,
    skip_assignment,
)
from labelapp.services.errors import NotFound, ServiceError
from labelapp.services.ranking import submit_ranking
from rlhf_worker.training import dialogue

LONG_TURN_CHARS = 600  # an earlier turn longer than this starts folded


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Labelers land on their next task; admins on the console (they may label at /label/)."""
    if is_admin(request.user):
        return redirect("console:dashboard")
    return redirect("label:task")


def _render_task(
    request: HttpRequest,
    assignment: Assignment,
    form: RankingForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    texts = completion_texts(assignment.order)
    labels = assignment.labels()
    form = form or RankingForm(labels=labels)
    cards = [
        {"label": label, "text": texts[cid], "flags": form.flag_field(label)}
        for label, cid in zip(labels, assignment.order, strict=True)
    ]
    context = {
        "assignment": assignment,
        "round": assignment.round,
        "cards": cards,
        "form": form,
        "error": error,
        "done": done_in_round(request.user, assignment.round),
        "flag_choices": FLAG_CHOICES,
        # A dialogue's earlier turns, shown as a chat above the turn the answers reply to.
        "turns": dialogue.parse(assignment.prompt.text) or [],
        "long_turn": LONG_TURN_CHARS,
    }
    return render(request, "label/task.html", context, status=status)


@labeler_required
@require_GET
def task(request: HttpRequest) -> HttpResponse:
    """The next task (the same one on reload until it is submitted or skipped)."""
    assignment = assign_next(request.user)
    if assignment is None:
        return render(request, "label/no_work.html")
    return _render_task(request, assignment)


def _refused(
    request: HttpRequest,
    assignment: Assignment | None,
    error: ServiceError,
    form: RankingForm | None = None,
) -> HttpResponse:
    """Show why nothing was saved: on the task page while it is still open, else alone."""
    if assignment is not None:
        assignment.refresh_from_db()
    if assignment is None or assignment.state != Assignment.State.RESERVED:
        return render(request, "label/refused.html", {"error": error.detail}, status=error.status)
    return _render_task(request, assignment, form, error.detail, error.status)


@labeler_required
@require_POST
def rank(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """Submit a ranking (or "all bad" with a better answer) from the task page's form, then go
    to the next task."""
    assignment = own_assignment(request.user, assignment_id)
    if assignment is None:
        return _refused(request, None, NotFound(f"assignment {assignment_id} not found"))
    form = RankingForm(request.POST, labels=assignment.labels())
    if not form.is_valid():
        error = "; ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items())
        return _render_task(request, assignment, form, error, status=422)
    try:
        ranking, created = submit_ranking(request.user, assignment_id, form.submission())
    except ServiceError as exc:
        return _refused(request, assignment, exc, form)
    what = "All bad: your better answer" if ranking.all_bad else "Ranking"
    messages.success(request, f"{what} saved." if created else f"{what} was already saved.")
    return redirect("label:task")


@labeler_required
@require_POST
def skip(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """Skip the task with a reason, then go to the next one."""
    form = SkipForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        skip_assignment(request.user, assignment_id, reason)
    except ServiceError as exc:
        return _refused(request, own_assignment(request.user, assignment_id), exc)
    messages.info(request, "Skipped.")
    return redirect("label:task")
