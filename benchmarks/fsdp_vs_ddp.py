"""Sharded against replicated data parallelism: our Llama's training step over the GPUs of one
host with DDP and with FSDP2, tokens/s and peak memory per GPU.

    NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
        torchrun --standalone --nproc_per_node 2 benchmarks/fsdp_vs_ddp.py --out fsdp.json

    torchrun --standalone --nproc_per_node 2 benchmarks/fsdp_vs_ddp.py --preset tiny --device cpu   # gloo, a check

The model (--preset llama-1b, the default) has Llama 3.2 1B's shape (hidden 2048, 16 blocks, 32
query heads sharing 8 key/value heads, SwiGLU 8192, vocabulary 128,256, tied head: 1.24B
parameters), random weights, no dropout. Every rank trains on its own batches (--batch x --seq
tokens per GPU), first as DistributedDataParallel (every GPU holds the whole model, its
gradients and AdamW's two moments: 16 bytes per parameter in fp32), then, from the same initial
weights on the same batches, sharded with FSDP2 as ``mlab-tfs train --parallel fsdp`` shards it
(mlab_tfs.training.loop.shard_model: one fully_shard unit per block and the root), where each
GPU holds 1/world of those 16 bytes and gathers a block's weights just before it runs.

Reported per strategy: tokens/s over all GPUs (the slowest rank's time), the peak of
torch.cuda.max_memory_allocated over the ranks, the bytes of weights + gradients + AdamW moments
each GPU holds, and the per-step losses (the mean over ranks); the largest difference between
the two strategies' losses is reported too (bf16 autocast on GPUs: close, not equal; fp32 on
the CPU: equal to 1e-5). bf16 autocast and fused AdamW on GPUs; eager by default
(--mode compile compiles the DDP model whole and the FSDP2 model block by block). NVLink multicast (NVLS, symmetric-memory multicast) stays off.
"""

from __future__ import annotations

import os

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from _common import Results, describe, log, require_cuda  # noqa: E402

# LlamaConfig fields of each preset (the tied head, as Llama 3.2 1B's)
PRESETS = {
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=8192, max_position_embeddings=2048,
                     rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    "llama-150m": dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       num_key_value_heads=4, intermediate_size=2048, max_position_embeddings=2048),
    "tiny": dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, intermediate_size=48, max_position_embeddings=64),
}
STRATEGIES = ("ddp", "fsdp")
LABELS = {"ddp": "DDP", "fsdp": "FSDP2"}


def build(preset: str, device: torch.device):
    from mlab_tfs.llama import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # the same initial weights on every rank and for both strategies
    config = LlamaConfig(**PRESETS[preset], tie_word_embeddings=True, attention_dropout=0.0, bos_token_id=0,
                         eos_token_id=0)
    return LlamaForCausalLM(config).to(device).train()


def state_bytes(model) -> int:
    """Bytes of the weights, gradients and AdamW's two moments this rank holds (all fp32)."""
    local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    return 4 * 4 * sum(p.numel() for p in local)


def run(strategy: str, args, device: torch.device, batches, world: int):
    from mlab_tfs.training.loop import shard_model

    cuda = device.type == "cuda"
    model = build(args.preset, device)
    n_params = sum(p.numel() for p in model.parameters())  # each once: the tied head is the embedding
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(model, device_ids=[device.index] if cuda else None, gradient_as_bucket_view=True)
        runner = torch.compile(runner) if args.mode == "compile" else runner
    else:  # compiled block by block, FSDP's hooks outside, as mlab-tfs train does
        runner = shard_model(model, compile_blocks=args.mode == "compile")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=cuda)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync()
            dist.barrier()
            start = time.perf_counter()
        ids = batches[i % len(batches)]
        with amp:
            loss = runner(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean) / world)
    sync()
    elapsed = time.perf_counter() - start
    row = dict(strategy=strategy, seconds_per_rank=gathered(elapsed, device, world),
               peak_memory_per_rank=gathered(torch.cuda.max_memory_allocated(device), device, world) if cuda else None,
               state_bytes_per_rank=gathered(state_bytes(model), device, world), parameters=n_params, losses=losses)
    row["tokens_per_s"] = world * args.batch * args.seq * args.steps / max(row["seconds_per_rank"])
    del runner, model, opt
    if cuda:
        torch.cuda.empty_cache()
    return row


def gathered(x: float, device: torch.device, world: int) -> list[float]:
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    out = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [float(v) for v in out]


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="llama-1b", choices=sorted(PRESETS))
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: gloo, fp32 (a check of the script)")
    p.add_argument("--mode", default="eager", choices=["eager", "compile"])
    p.add_argument("--batch", type=int, default=8, help="sequences per GPU per step")
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--out", default=None, help="the JSON file of every figure (rewritten as it goes)")
    args = p.parse_args()
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit("fsdp_vs_ddp.py runs under torchrun: torchrun --standalone --nproc_per_node 2 "
                         "benchmarks/fsdp_vs_ddp.py")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if args.device == "cuda":
        require_cuda("fsdp_vs_ddp.py")
        if torch.cuda.device_count() < world:
            raise SystemExit(f"fsdp_vs_ddp.py: {world} processes but only {torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl", device_id=device, timeout=datetime.timedelta(minutes=8))
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=8))
    if args.seq > PRESETS[args.preset]["max_position_embeddings"]:
        raise SystemExit(f"--seq {args.seq} is longer than the preset's {PRESETS[args.preset]['max_position_embeddings']} "
                         "positions")
    say = log if rank == 0 else (lambda msg: None)
    g = torch.Generator().manual_seed(1000 + rank)  # each rank its own data, the same for both strategies
    vocab = PRESETS[args.preset]["vocab_size"]
    batches = [torch.randint(0, vocab, (args.batch, args.seq), generator=g).to(device) for _ in range(4)]
    res = Results(args.out if rank == 0 else None, "fsdp_vs_ddp", world=world, preset=args.preset,
                  device=args.device, batch_per_gpu=args.batch, seq=args.seq, steps=args.steps, warmup=args.warmup,
                  mode=args.mode, env={k: os.environ[k] for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST")})
    say(f"{describe(res.data['environment'])}; {world} ranks, preset {args.preset}, {args.batch}x{args.seq} tokens "
        f"per rank")
    rows = {}
    for strategy in STRATEGIES:
        say(f"{LABELS[strategy]} over {world} ranks, {args.mode} ...")
        rows[strategy] = run(strategy, args, device, batches, world)
        if rank == 0:
            res.add(**rows[strategy])
        dist.barrier()
    diff = max(abs(a - b) for a, b in zip(rows["ddp"]["losses"], rows["fsdp"]["losses"]))
    ddp, fsdp = rows["ddp"], rows["fsdp"]
    res.set(max_loss_difference=diff, throughput_fsdp_over_ddp=fsdp["tokens_per_s"] / ddp["tokens_per_s"],
            state_fsdp_over_ddp=max(fsdp["state_bytes_per_rank"]) / max(ddp["state_bytes_per_rank"]),
            peak_memory_fsdp_over_ddp=(max(fsdp["peak_memory_per_rank"]) / max(ddp["peak_memory_per_rank"])
                                       if ddp["peak_memory_per_rank"] else None))
    res.done()
    if rank == 0:
        where = "GPUs" if args.device == "cuda" else "CPU processes"
        print(f"\n{describe(res.data['environment'])}; {world} {where}, preset {args.preset} "
              f"({ddp['parameters']:,} parameters), {args.batch}x{args.seq} tokens per rank, {args.mode}")
        print(f"{'strategy':<9} {'tokens/s':>12} {'peak MiB/rank':>14} {'state MiB/rank':>15} {'last loss':>10}")
        for s in STRATEGIES:
            r = rows[s]
            peak = max(r["peak_memory_per_rank"]) if r["peak_memory_per_rank"] else None
            print(f"{LABELS[s]:<9} {r['tokens_per_s']:>12,.0f} {mib(peak):>14} {mib(max(r['state_bytes_per_rank'])):>15} "
                  f"{r['losses'][-1]:>10.4f}")
        print(f"FSDP2 / DDP: throughput {res.data['throughput_fsdp_over_ddp']:.2f}x, state per rank "
              f"{res.data['state_fsdp_over_ddp']:.2f}x"
              + (f", peak memory {res.data['peak_memory_fsdp_over_ddp']:.2f}x" if res.data["peak_memory_fsdp_over_ddp"]
                 else "") + f"; largest loss difference {diff:.2e}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
