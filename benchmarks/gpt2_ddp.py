"""Scaling out: the GPT-2 124M training step of gpt2_train.py, data-parallel over the GPUs
of one host (DistributedDataParallel over NCCL), tokens/s against one GPU's.

    NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
        torchrun --nproc_per_node 2 benchmarks/gpt2_ddp.py --out ddp.json

Every rank first trains alone on its own GPU (no communication: the one-GPU figure, the
mean over ranks), then all ranks train one DDP model, each on its own batch of 16 x 1024
tokens (the global batch grows with the GPUs, as data parallelism is used). Scaling =
DDP tokens/s over the one-GPU tokens/s (ideal: the number of GPUs). bf16 autocast, fused
AdamW, sdpa; torch.compile by default (--mode eager for eager). NVLink multicast (NVLS,
symmetric-memory multicast) stays off.
"""

from __future__ import annotations

import os

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

from _common import Results, describe, log, require_cuda  # noqa: E402
from gpt2_train import LABELS, build, hf_config, time_training  # noqa: E402


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--impls", default="ours,hf")
    p.add_argument("--mode", default="compile", choices=["compile", "eager"])
    p.add_argument("--batch", type=int, default=16, help="per GPU")
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit("gpt2_ddp.py runs under torchrun: torchrun --nproc_per_node 2 benchmarks/gpt2_ddp.py")
    require_cuda("gpt2_ddp.py")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if torch.cuda.device_count() < world:
        raise SystemExit(f"gpt2_ddp.py: {world} processes but only {torch.cuda.device_count()} GPUs")
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local), timeout=datetime.timedelta(minutes=8))
    torch.backends.cuda.matmul.allow_tf32 = True
    say = log if rank == 0 else (lambda msg: None)

    config = hf_config(args.seq)
    g = torch.Generator().manual_seed(1000 + rank)  # each rank its own data
    batches = [torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=g).cuda() for _ in range(4)]
    res = Results(args.out if rank == 0 else None, "ddp", world=world, batch_per_gpu=args.batch, seq=args.seq,
                  steps=args.steps, mode=args.mode,
                  env=dict(NCCL_NVLS_ENABLE=os.environ["NCCL_NVLS_ENABLE"],
                           TORCH_SYMM_MEM_DISABLE_MULTICAST=os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"]))
    say(f"{describe(res.data['environment'])}; {world} ranks, NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}")
    compile_ = args.mode == "compile"

    def gathered(x: float) -> list[float]:
        t = torch.tensor([x], device="cuda")
        out = [torch.zeros_like(t) for _ in range(world)]
        dist.all_gather(out, t)
        return [float(v) for v in out]

    for impl in args.impls.split(","):
        say(f"{LABELS[impl]}: one GPU per rank, {args.mode} ...")
        torch.manual_seed(0)
        model = build(impl, transformers.GPT2LMHeadModel(config), config)
        single, _ = time_training(model, batches, args.steps, args.warmup, compile_)
        singles = gathered(single)
        del model
        torch.cuda.empty_cache()
        dist.barrier()

        say(f"{LABELS[impl]}: DDP over {world} GPUs, {args.mode} ...")
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = build(impl, transformers.GPT2LMHeadModel(config), config)
        wrap = lambda m: DDP(m, device_ids=[local], gradient_as_bucket_view=True)  # noqa: E731
        per_rank, _ = time_training(model, batches, args.steps, args.warmup, compile_, wrap=wrap)
        ddp = gathered(per_rank)
        del model
        torch.cuda.empty_cache()
        dist.barrier()
        one_gpu = sum(singles) / world
        total = min(ddp) * world  # the slowest rank sets the pace
        res.add(impl=impl, mode=args.mode, one_gpu_tokens_per_s=one_gpu, one_gpu_per_rank=singles,
                ddp_tokens_per_s=total, ddp_per_rank=ddp, scaling=total / one_gpu, efficiency=total / one_gpu / world)
    res.done()
    if rank == 0:
        print(f"\n{describe(res.data['environment'])}; {world} GPUs, DDP over NCCL, {args.mode}, "
              f"{args.batch}x{args.seq} tokens per GPU")
        print(f"{'model':<14} {'1 GPU tok/s':>12} {f'{world} GPUs tok/s':>14} {'scaling':>8}")
        for r in res.data["rows"]:
            print(f"{LABELS[r['impl']]:<14} {r['one_gpu_tokens_per_s']:>12.0f} {r['ddp_tokens_per_s']:>14.0f} "
                  f"{r['scaling']:>7.2f}x")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
