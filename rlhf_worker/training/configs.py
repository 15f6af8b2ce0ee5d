"""The training configs, one dataclass per step, each field with its default and its help.

Plain dataclasses, no torch: the web side reads them too (the hyperparameters a request may set,
the console's help texts), so there is one definition of every setting. The modules that train
import their config from here.
"""

from dataclasses import dataclass, field

ENGINES = ("transformers", "vllm")


@dataclass
class RewardConfig:
    epochs: int = field(default=2, metadata={"help": "Passes over the training rankings."})
    batch_size: int = field(default=8, metadata={"help": "Rankings per step (each K sequences)."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_length: int = field(
        default=512,
        metadata={
            "help": "Tokens per prompt+completion; a longer prompt loses its start, the "
            "completion is kept."
        },
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of prompts held out to measure accuracy."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    seed: int = field(default=0, metadata={"help": "Seed for shuffling and the score head."})
    lora_r: int = field(
        default=0,
        metadata={
            "help": "LoRA rank on every linear layer (the score head trains fully); 0 trains "
            "all weights. The adapters are merged into the saved reward model."
        },
    )
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA scale: adapter updates are scaled by alpha / r."}
    )
    top_layers: int = field(
        default=0,
        metadata={
            "help": "Train only the last N transformer layers (and the score head), the rest "
            "frozen: on a CPU the backward pass, and the memory it holds, stop there. 0 trains "
            "every layer."
        },
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass: less memory, more time."},
    )
    trust_weighting: bool = field(
        default=False,
        metadata={
            "help": "Weight each ranking in the loss by its labeler's trust (0-1, from their "
            "agreement with gold, with their own hidden repeats and with the other labelers; "
            "near 1 with little evidence), so a labeler at chance level counts less. Off: "
            "every ranking counts the same. Held-out accuracy is never weighted."
        },
    )


@dataclass
class SFTConfig:
    epochs: int = field(default=3, metadata={"help": "Passes over the examples."})
    batch_size: int = field(default=8, metadata={"help": "Examples per optimizer step."})
    learning_rate: float = field(
        default=2e-5,
        metadata={
            "help": "Peak AdamW step size: 2e-5 for a pretrained model's weights (a model "
            "trained from scratch takes ~1e-3)."
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(
        default=0, metadata={"help": "Steps of linear warm-up before the cosine decay."}
    )
    min_lr_ratio: float = field(
        default=1.0,
        metadata={"help": "Final learning rate / peak; 1.0 keeps the rate constant after warm-up."},
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient norm clip."})
    max_length: int = field(
        default=256,
        metadata={
            "help": "Tokens of prompt + answer + EOS; a longer prompt loses its start first."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the example order."})


@dataclass
class PPOConfig:
    steps: int = field(
        default=8, metadata={"help": "PPO iterations: one rollout batch + ppo_epochs of updates."}
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts (rollouts) per step."})
    mini_batch_size: int = field(default=4, metadata={"help": "Rollouts per gradient update."})
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout batch."})
    learning_rate: float = field(
        default=1e-5,
        metadata={
            "help": "AdamW step size: 1e-5 for a pretrained model's full weights (1e-4 took "
            "SmolLM2 to a KL of 8 nats in one round); LoRA (lora_r > 0) usually wants ~1e-4."
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient norm clip."})
    max_prompt_length: int = field(
        default=256, metadata={"help": "Formatted prompts keep at most their last N tokens."}
    )
    max_new_tokens: int = field(default=32, metadata={"help": "Longest sampled response."})
    temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature (the logprobs are tempered alike)."}
    )
    kl_coef: float = field(
        default=0.05,
        metadata={"help": "Per-token KL penalty to the reference policy (the round's start)."},
    )
    anchor_kl_coef: float = field(
        default=0.05,
        metadata={
            "help": "Per-token KL penalty to the anchor policy (v1, or the SFT policy), which "
            "bounds the drift across rounds; 0 turns it off."
        },
    )
    normalize_rewards: bool = field(
        default=True,
        metadata={"help": "Scale reward-model scores by their running mean and std in the run."},
    )
    length_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Subtracted per unit of |log(response length / the first batch's mean "
            "length)|: keeps answers near the starting policy's length; 0 turns it off."
        },
    )
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip, 1 ± this."})
    cliprange_value: float = field(
        default=0.2, metadata={"help": "How far a value may move from its rollout value."}
    )
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    missing_eos_penalty: float = field(
        default=1.0,
        metadata={"help": "Subtracted from the score of responses with no EOS in max_new_tokens."},
    )
    whiten_advantages: bool = field(
        default=True, metadata={"help": "Normalise advantages to mean 0, std 1 per batch."}
    )
    reward_batch_size: int = field(default=16, metadata={"help": "Batch size for scoring."})
    seed: int = field(default=0, metadata={"help": "Seed of prompt order, sampling and init."})
    lora_r: int = field(
        default=0,
        metadata={
            "help": "LoRA rank on every linear layer of the policy and the critic; 0 trains all "
            "their weights. With LoRA the reference policy is the policy with its adapters off "
            "(no second copy), and the adapters are merged into the saved policy."
        },
    )
    lora_alpha: int = field(
        default=16, metadata={"help": "LoRA scale: adapter updates are scaled by alpha / r."}
    )
    top_layers: int = field(
        default=0,
        metadata={
            "help": "Train only the last N transformer layers of the policy and the critic; "
            "0 trains every layer. On a CPU the backward pass stops there."
        },
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Recompute the policy's and critic's layer activations in the backward pass "
            "of the updates: less memory for about a third more compute."
        },
    )


@dataclass
class OnlineRLConfig:
    steps: int = field(default=8, metadata={"help": "Optimizer steps."})
    batch_size: int = field(
        default=8, metadata={"help": "Completions per step; a multiple of num_generations."}
    )
    num_generations: int = field(
        default=4, metadata={"help": "Completions sampled per prompt (the baseline's group)."}
    )
    max_new_tokens: int = field(default=32, metadata={"help": "Longest sampled completion."})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate."})
    beta: float = field(default=0.05, metadata={"help": "KL penalty to the starting policy."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and data order."})


@dataclass
class DPOTrainingConfig:
    epochs: int = field(default=1, metadata={"help": "Passes over the comparisons."})
    batch_size: int = field(default=8, metadata={"help": "Comparisons per step."})
    learning_rate: float = field(default=5e-6, metadata={"help": "AdamW learning rate."})
    beta: float = field(
        default=0.1, metadata={"help": "Strength of the implicit KL to the reference policy."}
    )
    max_length: int = field(
        default=512,
        metadata={
            "help": "Tokens of prompt+completion; a longer prompt loses its start, the "
            "completions are kept."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order."})


@dataclass
class SamplingConfig:
    k: int = field(default=4, metadata={"help": "Completions sampled per prompt."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest completion, in tokens."})
    temperature: float = field(
        default=0.7,
        metadata={
            "help": "Sampling temperature; 0 means greedy decoding. 0.7, as instruct models "
            "are usually sampled: at 1.0 a small one rambles and rarely ends its answer."
        },
    )
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling probability mass."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    max_prompt_length: int = field(
        default=256, metadata={"help": "Formatted prompts keep their last this many tokens."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})
    engine: str = field(
        default="transformers",
        metadata={
            "help": "transformers, or vllm (a GPU host with the vllm extra); vllm falls back to "
            "transformers, with a warning, where it is not installed or there is no GPU. The "
            "two engines draw different samples from the same seed."
        },
    )

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
