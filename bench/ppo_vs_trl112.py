"""Our PPO (rlhf_worker.training.ppo) vs TRL 1.12's PPOTrainer, side by side in one process.

Both start from the same policy, optimise against the same reward model (trained here on
rankings of the base policy's own answers by a hidden preference, shorter is better), on the
same prompts (the shipped self-instruct user-oriented instructions) with the same settings
(printed as a field-by-field mapping). Then both final policies and the start policy answer the
same held-out prompts and are measured the same way: the reward model's score of sampled and of
greedy answers, and the KL to the start policy of the sampled answers. Printed per trainer: wall
and CPU time (loading, training, saving), seconds per PPO step, training reward and KL as each
trainer reports them, held-out scores; then the ratios.

Both trainers get the same prompt batches in the same order (ours' seeded order, fed to TRL's
trainer in place of its shuffled loader). By default one trains after the other; --interleave
alternates them step by step (each with its own random generator states, so the policies are
the same as one after the other), which keeps a burst of other work on a shared machine from
landing on one trainer only: use it for timings on a busy machine.

TRL removed PPOTrainer after 1.12, so TRL's side runs in its own venv, which imports the
project's training code without Django (from the repository root):

    python3.11 -m venv bench/.venv-trl112 \
        && bench/.venv-trl112/bin/pip install torch==2.13.0 \
        && bench/.venv-trl112/bin/pip install -r bench/requirements-trl112.txt
    PYTHONPATH=. bench/.venv-trl112/bin/python bench/ppo_vs_trl112.py [--interleave] [--steps 24]

torch goes first: it is the local CPU wheel, and a looser pin pulls a CUDA build. The start
policy is the tiny one `manage.py bootstrap_model --tiny` builds (--base, default
artifacts/tiny-base-model).
About 4-6 minutes on 2 idle cores: reward model ~1 min, each trainer ~1-1.5 min, measuring ~1.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import transformers
import trl
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import GenerationConfig as HFGenerationConfig
from transformers import PrinterCallback, TrainerCallback, set_seed

from labelapp.management.simulation import preference  # stdlib only: no Django needed
from rlhf_worker.training.artifacts import (
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    save_model,
)
from rlhf_worker.training.format import encode_prompt, format_prompt
from rlhf_worker.training.generate import SamplingConfig, generate_completions
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import (
    RankedExample,
    RewardConfig,
    score_completions,
    train_reward_model,
)

if TYPE_CHECKING:
    from trl.experimental.ppo import PPOConfig as TRLPPOConfig

DATA = (
    Path(__file__).resolve().parents[1] / "labelapp" / "data" / "self_instruct_user_oriented.jsonl"
)
CPU = torch.device("cpu")


def trl_ppo() -> tuple[type, type]:
    """TRL 1.12's PPOConfig and PPOTrainer (trl.experimental warns on import; quietly here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.ppo import PPOConfig as TRLPPOConfig
        from trl.experimental.ppo import PPOTrainer
    return TRLPPOConfig, PPOTrainer


def load_prompts() -> list[str]:
    """The 252 shipped user-oriented instructions, deduplicated, in a fixed order."""
    with DATA.open(encoding="utf-8") as f:
        return sorted({json.loads(line)["prompt"] for line in f if line.strip()})


def our_prompt_order(n: int, count: int, seed: int) -> list[int]:
    """The prompt indices train_ppo takes, in order: it pops from seeded permutations."""
    rng = torch.Generator().manual_seed(seed)
    order: list[int] = []
    taken = []
    for _ in range(count):
        if not order:
            order = torch.randperm(n, generator=rng).tolist()
        taken.append(order.pop())
    return taken


def trl_config(ours: PPOConfig, eos_token_id: int, out_dir: Path) -> "TRLPPOConfig":
    """TRL 1.12's PPOConfig with the same algorithm settings as `ours` (see print_mapping)."""
    return trl_ppo()[0](
        output_dir=str(out_dir),
        seed=ours.seed,
        total_episodes=ours.steps * ours.batch_size,
        per_device_train_batch_size=ours.batch_size,
        gradient_accumulation_steps=1,
        num_mini_batches=ours.batch_size // ours.mini_batch_size,
        num_ppo_epochs=ours.ppo_epochs,
        learning_rate=ours.learning_rate,
        lr_scheduler_type="constant",  # ours keeps the learning rate fixed
        weight_decay=0.01,  # torch.optim.AdamW's default, which ours uses
        response_length=ours.max_new_tokens,
        temperature=ours.temperature,
        kl_coef=ours.kl_coef,
        kl_estimator="k1",
        cliprange=ours.cliprange,
        cliprange_value=ours.cliprange_value,
        vf_coef=ours.vf_coef,
        gamma=ours.gamma,
        lam=ours.lam,
        whiten_rewards=False,
        missing_eos_penalty=ours.missing_eos_penalty,
        stop_token_id=eos_token_id,  # ours also cuts each answer after its first EOS
        local_rollout_forward_batch_size=max(ours.batch_size, ours.reward_batch_size),
        num_sample_generations=0,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )


def print_mapping(ours: PPOConfig, theirs: "TRLPPOConfig") -> None:
    rows = [
        ("steps", ours.steps, f"total_episodes={theirs.total_episodes} (steps × batch)"),
        ("batch_size", ours.batch_size, "per_device_train_batch_size="
         f"{theirs.per_device_train_batch_size}, gradient_accumulation_steps=1"),
        ("mini_batch_size", ours.mini_batch_size, f"num_mini_batches={theirs.num_mini_batches}"
         " (one optimizer step per minibatch)"),
        ("ppo_epochs", ours.ppo_epochs, f"num_ppo_epochs={theirs.num_ppo_epochs}"),
        ("learning_rate", ours.learning_rate, f"learning_rate={theirs.learning_rate}, "
         f"lr_scheduler_type={theirs.lr_scheduler_type.value}, weight_decay={theirs.weight_decay}"),
        ("max_grad_norm", ours.max_grad_norm, "none: TRL 1.12's PPO loop never clips gradients"),
        ("max_prompt_length", ours.max_prompt_length, "dataset ids cut to the same last tokens"),
        ("max_new_tokens", ours.max_new_tokens, f"response_length={theirs.response_length}"),
        ("temperature", ours.temperature, f"temperature={theirs.temperature}"),
        ("kl_coef", ours.kl_coef, f"kl_coef={theirs.kl_coef}, kl_estimator={theirs.kl_estimator}"),
        ("cliprange", ours.cliprange, f"cliprange={theirs.cliprange}"),
        ("cliprange_value", ours.cliprange_value, f"cliprange_value={theirs.cliprange_value}"),
        ("vf_coef", ours.vf_coef, f"vf_coef={theirs.vf_coef}"),
        ("gamma, lam", f"{ours.gamma}, {ours.lam}", f"gamma={theirs.gamma}, lam={theirs.lam}"),
        ("missing_eos_penalty", ours.missing_eos_penalty, "missing_eos_penalty="
         f"{theirs.missing_eos_penalty}, stop_token_id={theirs.stop_token_id} (EOS)"),
        ("whiten_advantages", ours.whiten_advantages, "always on; whiten_rewards=False"),
        ("reward_batch_size", ours.reward_batch_size, "local_rollout_forward_batch_size="
         f"{theirs.local_rollout_forward_batch_size}"),
        ("lora_r, gradient_checkpointing", f"{ours.lora_r}, {ours.gradient_checkpointing}",
         f"no peft_config, gradient_checkpointing={theirs.gradient_checkpointing}"),
        ("seed", ours.seed, f"seed={theirs.seed}"),
    ]  # fmt: skip
    print("settings, ours -> TRL 1.12 PPOConfig:")
    for name, value, mapped in rows:
        print(f"  {name}={value} -> {mapped}")


def clock() -> tuple[float, float]:
    """(wall-clock seconds, this process's CPU seconds): the CPU time is less disturbed by other
    work on a shared machine, though not immune (threads waiting on each other still spin)."""
    return time.monotonic(), time.process_time()


def elapsed(since: tuple[float, float]) -> tuple[float, float]:
    now = clock()
    return now[0] - since[0], now[1] - since[1]


class Turns:
    """Runs the two trainers in threads and times them; with `interleave` they take turns.

    Sequential: the first trainer runs to the end, then the second. Interleaved: one PPO step of
    one, then one of the other, and so on; the waiting one is blocked, so only one computes at a
    time, and a burst of other work on a shared machine slows both alike. Each trainer gets its
    own torch, numpy and random generator states back when its turn comes, so it draws exactly
    the random numbers it would draw alone: both modes train the same policies. Timings count a
    trainer's own turns only: `seconds` (wall, CPU) in all, `steps` (wall, CPU) per PPO step,
    step 1 including the loading.
    """

    def __init__(self, names: list[str], interleave: bool) -> None:
        self.names, self.interleave = names, interleave
        self.turn, self.done = names[0], set()
        self.cond = threading.Condition()
        self.rng: dict[str, tuple] = {}
        self.since = clock()
        self.seconds = {name: (0.0, 0.0) for name in names}
        self.steps: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        self.errors: list[BaseException] = []

    def _stop(self, name: str) -> tuple[float, float]:
        d = elapsed(self.since)
        self.seconds[name] = (self.seconds[name][0] + d[0], self.seconds[name][1] + d[1])
        return d

    def _wait_turn(self, name: str) -> None:
        self.cond.wait_for(lambda: self.turn == name)
        if name in self.rng:
            torch_state, numpy_state, python_state = self.rng.pop(name)
            torch.set_rng_state(torch_state)
            np.random.set_state(numpy_state)
            random.setstate(python_state)
        self.since = clock()

    def _hand_over(self, name: str) -> None:
        other = next(n for n in self.names if n != name)
        if other not in self.done:
            self.rng[name] = (torch.get_rng_state(), np.random.get_state(), random.getstate())
            self.turn = other
            self.cond.notify_all()

    def step_end(self, name: str) -> None:
        """Called by trainer `name` after each PPO step."""
        with self.cond:
            self.steps[name].append(self._stop(name))
            if self.interleave:
                self._hand_over(name)
            self._wait_turn(name)

    def run(self, runs: dict[str, Callable[[], dict]]) -> dict[str, dict]:
        """Each runs[name]() in its own thread, in turns; their results."""
        results: dict[str, dict] = {}

        def target(name: str) -> None:
            with self.cond:
                self._wait_turn(name)
            try:
                results[name] = runs[name]()
            except BaseException as exc:  # re-raised in the main thread
                self.errors.append(exc)
            finally:
                with self.cond:
                    self._stop(name)
                    self.done.add(name)
                    self._hand_over(name)

        threads = [threading.Thread(target=target, args=(name,)) for name in self.names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]
        return results


class StepEnd(TrainerCallback):
    """Calls `hook` at the end of every PPO step of TRL's trainer."""

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook = hook

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.hook()


def run_ours(
    base: Path,
    rm: Path,
    prompts: list[str],
    out: Path,
    config: PPOConfig,
    step_end: Callable[[], None],
) -> dict:
    """Train with our train_ppo; per-step metrics as it reports them."""
    set_seed(config.seed)
    result = train_ppo(base, rm, prompts, out, config, on_step=lambda *_: step_end())
    return {
        "score": [m["mean_reward"] for m in result["steps"]],
        "kl": [m["kl"] for m in result["steps"]],
    }


def run_trl(
    base: Path,
    rm: Path,
    prompts: list[str],
    out: Path,
    config: PPOConfig,
    step_end: Callable[[], None],
) -> dict:
    """Train with TRL 1.12's PPOTrainer on the same inputs; its logged metrics."""
    tokenizer = load_tokenizer(base)
    args = trl_config(config, tokenizer.eos_token_id, out / "trainer")
    tokenizer.padding_side = "left"  # PPOTrainer generates after the batch's padded queries
    ids = [encode_prompt(tokenizer, p)[-config.max_prompt_length :] for p in prompts]
    # The same batches as ours, in the same order: the cost of a step depends on its prompts.
    order = our_prompt_order(len(prompts), config.steps * config.batch_size, config.seed)
    dataset = Dataset.from_dict({"input_ids": [ids[i] for i in order]})
    policy = load_causal_lm(base, device=CPU, dtype=torch.float32)
    ref_policy = load_causal_lm(base, device=CPU, dtype=torch.float32)
    value_model = load_reward_model(rm, device=CPU, dtype=torch.float32)  # the critic, as ours
    reward_model = load_reward_model(rm, device=CPU)
    reward_model.requires_grad_(False)
    set_seed(config.seed)  # PPOTrainer seeds torch only; its minibatch shuffle uses numpy
    trainer = trl_ppo()[1](
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
        callbacks=[StepEnd(step_end)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.dataloader = trainer.accelerator.prepare(
        DataLoader(
            dataset,
            batch_size=args.local_batch_size,
            shuffle=False,  # replaces PPOTrainer's shuffled loader: the order is ours, above
            collate_fn=trainer.data_collator,
            drop_last=True,
        )
    )
    assert args.local_mini_batch_size == config.mini_batch_size
    assert args.num_total_batches == config.steps
    with contextlib.redirect_stdout(io.StringIO()):  # its "===training policy===" banner
        trainer.train()
    save_model(trainer.accelerator.unwrap_model(trainer.model).policy, tokenizer, out / "model")
    logs = [row for row in trainer.state.log_history if "objective/scores" in row]
    return {
        "score": [row["objective/scores"] for row in logs],
        "kl": [row["objective/kl"] for row in logs],
    }


def response_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """[B, T] log-probabilities of the response tokens (the last T columns of input_ids)."""
    T = responses.shape[1]
    logits = (
        model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(1) - 1).clamp(min=0),  # left padding, as generate
        )
        .logits[:, -T - 1 : -1]
        .float()
        / temperature
    )
    return torch.log_softmax(logits, -1).gather(-1, responses.unsqueeze(-1)).squeeze(-1)


@torch.inference_mode()
def held_out(
    policy_dir: Path,
    start_dir: Path,
    rm_dir: Path,
    prompts: list[str],
    config: PPOConfig,
    k: int,
    seed: int,
) -> dict[str, float]:
    """One policy measured on held-out prompts, the same way for every policy.

    Sampled: k answers per prompt at the PPO temperature from the full distribution (what PPO
    optimises); their reward-model score minus the missing-EOS penalty, and their KL to the start
    policy (summed per-token log-ratio, like both trainers' kl). Greedy: one answer per prompt,
    its score and length in characters.
    """
    tokenizer = load_tokenizer(policy_dir)
    policy = load_causal_lm(policy_dir, device=CPU, dtype=torch.float32).eval()
    start = load_causal_lm(start_dir, device=CPU, dtype=torch.float32).eval()
    rm = load_reward_model(rm_dir, device=CPU).eval()
    sampling = HFGenerationConfig(
        do_sample=True,
        temperature=config.temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=config.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    scores, kls = [], []
    for i in range(0, len(prompts), 16):
        batch = prompts[i : i + 16]
        enc = tokenizer(
            [format_prompt(tokenizer, p) for p in batch],
            return_tensors="pt",
            padding=True,
            padding_side="left",
        )
        prompt_ids = enc.input_ids[:, -config.max_prompt_length :].repeat_interleave(k, 0)
        prompt_mask = enc.attention_mask[:, -config.max_prompt_length :].repeat_interleave(k, 0)
        P = prompt_ids.shape[1]
        responses = policy.generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=sampling
        )[:, P:]
        is_eos = (responses == tokenizer.eos_token_id).long()
        mask = (is_eos.cumsum(1) - is_eos) == 0  # up to and including the first EOS
        responses = responses.masked_fill(~mask, tokenizer.pad_token_id)
        input_ids = torch.cat([prompt_ids, responses], 1)
        attention_mask = torch.cat([prompt_mask, mask.long()], 1)

        logprobs = [
            response_logprobs(model, input_ids, attention_mask, responses, config.temperature)
            for model in (policy, start)
        ]
        kls.append(((logprobs[0] - logprobs[1]) * mask).sum(1))
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        score = score_completions(rm, tokenizer, [p for p in batch for _ in range(k)], texts)
        scores.append(score - config.missing_eos_penalty * (is_eos.sum(1) == 0).float())
    greedy = generate_completions(
        policy_dir,
        prompts,
        SamplingConfig(k=1, temperature=0, max_new_tokens=config.max_new_tokens),
    )
    greedy_texts = [answers[0]["text"] for answers in greedy]
    greedy_scores = score_completions(rm, tokenizer, prompts, greedy_texts)
    return {
        "sampled": torch.cat(scores).mean().item(),
        "kl": torch.cat(kls).mean().item(),
        "greedy": greedy_scores.mean().item(),
        "chars": sum(map(len, greedy_texts)) / len(greedy_texts),
    }


def per_step(steps: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per PPO step over steps 2..N (step 1 includes the loading)."""
    rest = steps[1:]
    if not rest:
        return float("nan"), float("nan")
    return sum(w for w, _ in rest) / len(rest), sum(c for _, c in rest) / len(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="artifacts/tiny-base-model", help="The start policy.")
    parser.add_argument("--steps", type=int, default=24, help="PPO steps (rollout batches).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mini-batch-size", type=int, default=4)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--held-out", type=int, default=64, help="Prompts kept for measuring.")
    parser.add_argument("--samples", type=int, default=4, help="Sampled answers per prompt.")
    parser.add_argument("--preference", default="shorter", help="The hidden preference.")
    parser.add_argument("--trl-first", action="store_true", help="TRL's side starts.")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="Alternate the trainers step by step (same results; timings robust to other work).",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    base = Path(args.base)
    if not (base / "config.json").exists():
        raise SystemExit(
            f"no model in {base}: build it with `.venv/bin/python manage.py bootstrap_model`"
        )

    config = PPOConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        mini_batch_size=args.mini_batch_size,
        ppo_epochs=args.ppo_epochs,
        learning_rate=args.learning_rate,
        max_new_tokens=args.max_new_tokens,
        kl_coef=args.kl_coef,
        seed=args.seed,
    )
    run_started = time.monotonic()
    prompts = load_prompts()
    random.Random(args.seed).shuffle(prompts)
    eval_prompts, train_prompts = prompts[: args.held_out], prompts[args.held_out :]
    prefer = preference(args.preference)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}; load average at start {os.getloadavg()[0]:.1f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The reward model: the base policy's own answers (4 per training prompt), ranked by
        # the hidden preference, K-wise loss, as the loop trains it.
        started = time.monotonic()
        samples = generate_completions(
            base, train_prompts, SamplingConfig(k=4, max_new_tokens=config.max_new_tokens)
        )
        rankings = [
            RankedExample(p, sorted((a["text"] for a in answers), key=lambda t, p=p: -prefer(p, t)))
            for p, answers in zip(train_prompts, samples, strict=True)
        ]
        rm = train_reward_model(base, rankings, tmp / "rm", RewardConfig(epochs=2))
        print(
            f"reward model: {rm['train_rankings']} rankings of 4 base-policy answers by "
            f"'{args.preference}', held-out pairwise accuracy {rm['eval_accuracy']:.3f}, "
            f"{time.monotonic() - started:.0f} s"
        )
        print(
            f"prompts: {len(train_prompts)} for PPO, {len(eval_prompts)} held out; "
            f"{config.steps} steps × {config.batch_size} rollouts = "
            f"{config.steps * config.batch_size} episodes"
        )
        print_mapping(config, trl_config(config, load_tokenizer(base).eos_token_id, tmp / "x"))

        names = ["TRL 1.12", "ours"] if args.trl_first else ["ours", "TRL 1.12"]
        turns = Turns(names, interleave=args.interleave)
        common = (base, tmp / "rm", train_prompts)
        runs = {
            "ours": partial(
                run_ours, *common, tmp / "ours", config, partial(turns.step_end, "ours")
            ),
            "TRL 1.12": partial(
                run_trl, *common, tmp / "trl", config, partial(turns.step_end, "TRL 1.12")
            ),
        }
        started = time.monotonic()
        results = turns.run(runs)
        for name in names:
            results[name]["seconds"], results[name]["steps"] = (
                turns.seconds[name],
                turns.steps[name],
            )
        print(
            f"trained {' and '.join(names)}, "
            f"{'step by step in turns' if args.interleave else 'one after the other'}, in "
            f"{time.monotonic() - started:.0f} s (load average now {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        ours, theirs = results["ours"], results["TRL 1.12"]

        started = time.monotonic()
        measure = {
            "start": held_out(base, base, tmp / "rm", eval_prompts, config, args.samples, 1),
            "ours": held_out(tmp / "ours", base, tmp / "rm", eval_prompts, config, args.samples, 1),
            "TRL 1.12": held_out(
                tmp / "trl" / "model", base, tmp / "rm", eval_prompts, config, args.samples, 1
            ),
        }
        print(f"held-out measurements: {time.monotonic() - started:.0f} s")

    print()
    print("training, as each trainer reports it (score after the missing-EOS penalty; KL summed")
    print("per response to the start policy; first step -> mean of the last 4 steps):")
    print(
        f"{'':10s} {'wall s':>7s} {'CPU s':>7s} {'s/step':>7s} {'median':>7s} {'CPU/step':>8s} "
        f"{'score':>14s} {'KL':>14s}"
    )
    for name, r in (("ours", ours), ("TRL 1.12", theirs)):
        last_score = sum(r["score"][-4:]) / len(r["score"][-4:])
        last_kl = sum(r["kl"][-4:]) / len(r["kl"][-4:])
        wall, cpu = per_step(r["steps"])
        median = statistics.median(w for w, _ in r["steps"][1:])
        print(
            f"{name:10s} {r['seconds'][0]:7.1f} {r['seconds'][1]:7.1f} {wall:7.2f} {median:7.2f} "
            f"{cpu:8.2f} {r['score'][0]:5.2f} -> {last_score:5.2f} {r['kl'][0]:5.2f} -> "
            f"{last_kl:5.2f}"
        )
    print("(s/step: mean wall seconds of steps 2..N, step 1 also loads; median: their median)")
    print()
    print(
        f"held out ({len(eval_prompts)} prompts; sampled: {args.samples} answers each at "
        f"temperature {config.temperature}; greedy: 1):"
    )
    print(
        f"{'':10s} {'sampled score':>13s} {'KL to start':>11s} {'greedy score':>12s} {'chars':>6s}"
    )
    for name, m in measure.items():
        print(
            f"{name:10s} {m['sampled']:13.2f} {m['kl']:11.2f} {m['greedy']:12.2f} {m['chars']:6.0f}"
        )
    print(
        f"whole run {time.monotonic() - run_started:.0f} s; load average at the end "
        f"{os.getloadavg()[0]:.1f} (1 min, {os.cpu_count()} cores)"
    )
    start = measure["start"]
    gain = {name: measure[name]["sampled"] - start["sampled"] for name in ("ours", "TRL 1.12")}
    print()
    ours_step, trl_step = per_step(ours["steps"]), per_step(theirs["steps"])
    pairs = zip(ours["steps"][1:], theirs["steps"][1:], strict=True)
    stepwise = statistics.median(a[0] / b[0] for a, b in pairs)
    print(
        f"time ours/TRL: total wall {ours['seconds'][0] / theirs['seconds'][0]:.2f}, CPU "
        f"{ours['seconds'][1] / theirs['seconds'][1]:.2f}; per step wall "
        f"{ours_step[0] / trl_step[0]:.2f}, CPU {ours_step[1] / trl_step[1]:.2f}, median of the "
        f"step-by-step ratios {stepwise:.2f}"
    )
    print(
        f"held-out sampled-score gain over the start policy: ours {gain['ours']:+.2f}, "
        f"TRL {gain['TRL 1.12']:+.2f}"
    )


if __name__ == "__main__":
    main()
