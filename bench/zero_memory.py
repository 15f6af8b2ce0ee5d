"""Memory of the model states (weights, gradients, AdamW moments) per GPU for a policy trained
with plain data parallelism, ZeRO-2 and ZeRO-3 (DeepSpeed; FSDP's SHARD_GRAD_OP and FULL_SHARD
shard the same states), from the ZeRO paper's own formula, not measured.

    .venv/bin/python bench/zero_memory.py [--gpus 2 8] [--params 0.5 7]

Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
section 3 and figure 1: mixed-precision AdamW holds 2 + 2 + K bytes per parameter (fp16 weights,
fp16 gradients, K = 12 bytes of fp32 master weights, momentum and variance). Per GPU, with N GPUs:
data parallel (2 + 2 + K)Ψ, ZeRO-2 (2 + (2 + K)/N)Ψ, ZeRO-3 (2 + 2 + K)Ψ/N. Our own loops train
in float32 (4 + 4 + 8 bytes: the same 16 bytes per parameter; ZeRO-2 then keeps 4Ψ of weights).
Activations, the frozen reference and reward models of PPO, and buffers come on top.
"""

import argparse

K = 12  # bytes per parameter of fp32 master weights, momentum and variance (the paper's K)


def per_gpu_gb(params: float, gpus: int) -> dict[str, float]:
    """GB (1e9 bytes) of model states per GPU for `params` parameters on `gpus` GPUs."""
    return {
        "data parallel": (2 + 2 + K) * params / 1e9,
        "ZeRO-2": (2 + (2 + K) / gpus) * params / 1e9,
        "ZeRO-3": (2 + 2 + K) * params / gpus / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--params", type=float, nargs="+", default=[0.5, 7.0], help="billions")
    args = parser.parse_args()
    print("params  GPUs  data parallel  ZeRO-2   ZeRO-3   (GB of model states per GPU)")
    for billions in args.params:
        for gpus in args.gpus:
            gb = per_gpu_gb(billions * 1e9, gpus)
            print(
                f"{billions:>5}B  {gpus:>4}  {gb['data parallel']:>13.1f}  "
                f"{gb['ZeRO-2']:>6.1f}   {gb['ZeRO-3']:>6.1f}"
            )
    # The paper's own check (figure 1): 7.5B parameters on 64 GPUs.
    fig1 = per_gpu_gb(7.5e9, 64)
    print(f"check, 7.5B on 64 GPUs (paper: 120, 16.6, 1.9): {fig1['data parallel']:.0f}, "
          f"{fig1['ZeRO-2']:.1f}, {fig1['ZeRO-3']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
