"""The one prompt template every step uses (SFT, generation, reward model, PPO, DPO)."""

PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


def format_prompt(prompt: str) -> str:
    """The text a model is conditioned on for `prompt`; its answer follows directly."""
    return PROMPT_TEMPLATE.format(prompt=prompt.strip())
