import pytest

from labelapp.models import Assignment, LabelingRound
from labelapp.services.errors import InvalidTransition
from labelapp.services.rounds import create_round, round_progress, start_labeling, transition
from tests.conftest import make_round

State = LabelingRound.State


@pytest.mark.django_db
def test_a_round_walks_the_whole_state_machine():
    round_ = create_round([])
    for state in (State.GENERATING, State.LABELING, State.TRAINING, State.DONE):
        transition(round_, state)
        assert round_.state == state


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], State.TRAINING),
        ([], State.DONE),
        ([State.GENERATING], State.DRAFT),
        ([State.LABELING], State.GENERATING),
        ([State.LABELING, State.TRAINING, State.DONE], State.LABELING),
        ([State.LABELING, State.TRAINING, State.DONE], State.FAILED),
    ],
)
def test_an_illegal_transition_is_refused_and_changes_nothing(path, illegal):
    round_ = create_round([])
    for state in path:
        transition(round_, state)
    before = round_.state
    with pytest.raises(InvalidTransition):
        transition(round_, illegal)
    round_.refresh_from_db()
    assert round_.state == before


@pytest.mark.django_db
def test_a_failed_round_retries_into_the_state_it_failed_from():
    round_ = create_round([])
    transition(round_, State.GENERATING)
    transition(round_, State.FAILED, error="CUDA out of memory")
    assert (round_.failed_from, round_.error) == (State.GENERATING, "CUDA out of memory")
    with pytest.raises(InvalidTransition):
        transition(round_, State.TRAINING)
    transition(round_, State.GENERATING)
    assert (round_.state, round_.failed_from, round_.error) == (State.GENERATING, "", "")


@pytest.mark.django_db
def test_start_labeling_makes_overlap_slots_per_prompt_once():
    round_ = make_round(n_prompts=3, overlap=2)
    assert Assignment.objects.filter(round=round_, state=Assignment.State.OPEN).count() == 6
    assert start_labeling(round_) == 0  # idempotent
    assert Assignment.objects.filter(round=round_).count() == 6
    assert round_progress(round_)["total"] == 6
