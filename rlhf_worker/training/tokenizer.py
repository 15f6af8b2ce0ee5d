"""A byte-level BPE tokenizer trained locally (no hub), wrapped as a transformers tokenizer."""

from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rlhf_worker.training.format import PROMPT_TEMPLATE

# Distinct pad and EOS: TRL and sequence classification both need to tell padding from the end.
SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
}


@dataclass
class TokenizerConfig:
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size."})
    min_frequency: int = field(default=2, metadata={"help": "Rarest pair that may be merged."})


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts`; the result saves and loads like any hub tokenizer."""
    bpe = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The template's words are always seen, however small the corpus.
    bpe.train_from_iterator([PROMPT_TEMPLATE, *texts], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS)
    tokenizer.padding_side = "right"
    return tokenizer
