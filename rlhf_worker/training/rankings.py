"""One labeled ranking as the reward model trains on it.

Plain Python, no torch: the web side builds these (labelapp.services.exports.training_rankings)
and the worker's K-wise loss reads them (reward.py).
"""

import math
from dataclasses import dataclass

from rlhf_worker.training.dialogue import Message


@dataclass(frozen=True)
class RankedExample:
    """A prompt and its completions ranked best -> worst (K >= 2 to compare anything).

    groups: each completion's group, 0 the best, equal groups tied (non-decreasing); None for a
    strict order (groups 0, 1, ..., K-1). weight: how much the ranking counts in the loss
    (its labeler's trust under RewardConfig.trust_weighting), 1.0 otherwise; 0 trains nothing.
    """

    prompt: str | list[Message]
    completions: list[str]
    groups: list[int] | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.groups is not None and len(self.groups) != len(self.completions):
            raise ValueError(f"{len(self.groups)} groups for {len(self.completions)} completions")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"a ranking's weight must be finite and >= 0, got {self.weight}")

    @property
    def tie_groups(self) -> list[int]:
        """Each completion's group: `groups`, or 0, 1, ..., K-1 for a strict order."""
        return list(self.groups) if self.groups is not None else list(range(len(self.completions)))
