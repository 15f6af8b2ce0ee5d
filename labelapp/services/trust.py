"""How far each labeler's judgements can be trusted, from the three checks the product has.

Every check compares pair judgements (which of two answers is better, or tied) with a
reference, each agreement counted as in services.agreement (a tie against a direction by half):

- gold: the gold rankings an admin marked, on the same answers;
- others: the majority of the other labelers of the same prompt (quality.labeler_stats);
- self: the labeler's own ranking of a hidden repeat (the same answers, shown in another order).

Two judgements drawn at random agree half the time, so a pair's skill is 2·agreement − 1 (0 at
chance, 1 always agreeing). A labeler's trust pools the pairs of every check, floors the skill at
0, and counts TRUST_PRIOR_PAIRS judgements of full trust on top, so that a labeler with little
evidence stays near 1 and only a record of chance-level or contrary judgements brings it down:

    trust = (max(0, 2·agreeing − pairs) + prior) / (pairs + prior)

Self-consistency alone cannot show a labeler who is consistently wrong; gold and the others can,
and they weigh as much per judgement.
"""

from django.conf import settings


def trust_score(agreeing: float, pairs: int, prior_pairs: int | None = None) -> float:
    """A labeler's trust in [0, 1] from `agreeing` of `pairs` judgements (pooled over checks)."""
    prior = settings.TRUST_PRIOR_PAIRS if prior_pairs is None else prior_pairs
    if agreeing < 0 or pairs < 0 or agreeing > pairs or prior < 0:
        raise ValueError(f"need 0 <= agreeing <= pairs and prior >= 0, got {agreeing}, {pairs}")
    if pairs + prior == 0:
        return 1.0
    return (max(0.0, 2 * agreeing - pairs) + prior) / (pairs + prior)
