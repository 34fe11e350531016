"""Training-step throughput of GPT-2 124M: ours vs transformers, eager and torch.compile.

    python benchmarks/gpt2_train.py --out train.json        # on a CUDA machine

Both models get the same random weights (the real GPT2Config() shape), the same batches,
bf16 autocast, fused AdamW, sdpa attention. "ours+fused" is our model with
mlab_tfs.gpt2.fast.use_fused_ops (F.layer_norm and F.gelu in place of the hand-written
layer norm and GELU). Before timing goes on, the first step's losses of every model are
compared with transformers' and the run stops if they differ beyond bf16 tolerance.

MFU counts 6 N FLOPs per token for the parameter matmuls (N without the position table:
the tied embedding is also the LM head's matmul) plus 12 L C T for attention scores and
values (forward and backward), as in the PaLM paper's appendix B, over two peaks: the
H100's 989 TFLOP/s dense bf16 datasheet figure and the bf16 matmul rate measured here.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import Results, describe, log, require_cuda

IMPLS = ("ours", "ours+fused", "hf")
LABELS = {"ours": "ours", "ours+fused": "ours + fused ops", "hf": "transformers"}


def measured_matmul_tflops(n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def build(impl: str, hf_model, config):
    """The model to time: transformers' own, or ours with the same weights."""
    if impl == "hf":
        return hf_model.cuda()
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel, from_hf_state_dict
    from mlab_tfs.gpt2.fast import use_fused_ops

    cfg = GPT2Config.from_dict({**config.to_dict(), "attn_implementation": "sdpa"})
    ours = GPT2LMHeadModel(cfg)
    ours.load_state_dict(from_hf_state_dict(hf_model.state_dict(), cfg))
    if impl == "ours+fused":
        use_fused_ops(ours)
    return ours.cuda()


def time_training(model, batches, steps: int, warmup: int, compile_: bool, wrap=None) -> tuple[float, float]:
    """(tokens per second, first loss). wrap: applied to the model before compiling (e.g. DDP)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    fwd = wrap(model) if wrap is not None else model
    fwd = torch.compile(fwd) if compile_ else fwd
    first = None
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            t = time.perf_counter()
        ids = batches[i % len(batches)]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if first is None:
            first = float(loss)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    return batches[0].numel() * steps / elapsed, first


def hf_config(seq: int):
    import transformers

    config = transformers.GPT2Config(n_positions=max(1024, seq), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    config._attn_implementation = "sdpa"
    return config


def flops_per_token(n_params: int, config, seq: int) -> int:
    return 6 * n_params + 12 * config.n_layer * config.n_embd * seq


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (the compile happens here)")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--eager-impls", default="ours,ours+fused,hf")
    p.add_argument("--compile-impls", default="ours,hf",
                   help="add ours+fused to time it compiled too (inductor fuses the hand-written ops itself)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    require_cuda("gpt2_train.py")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    config = hf_config(args.seq)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=g).cuda() for _ in range(4)]
    peak = measured_matmul_tflops()
    res = Results(args.out, "train", batch=args.batch, seq=args.seq, steps=args.steps, warmup=args.warmup,
                  matmul_tflops_measured=peak)
    log(f"{describe(res.data['environment'])}; bf16 matmul measured {peak:.0f} TFLOP/s")
    n_params = None
    for mode in args.modes.split(","):
        impls = (args.eager_impls if mode == "eager" else args.compile_impls).split(",")
        losses = {}
        for impl in impls:
            if impl not in IMPLS:
                raise SystemExit(f"unknown impl {impl!r}; expected one of {IMPLS}")
            log(f"training step: {LABELS[impl]}, {mode} ...")
            torch.manual_seed(0)
            hf = transformers.GPT2LMHeadModel(config)
            model = build(impl, hf, config)
            if n_params is None:
                n_params = sum(p.numel() for n, p in model.named_parameters() if "wpe" not in n)
                res.set(params_without_wpe=n_params)
            tok_s, losses[impl] = time_training(model, batches, args.steps, args.warmup, mode == "compile")
            fpt = flops_per_token(n_params, config, args.seq)
            res.add(impl=impl, mode=mode, tokens_per_s=tok_s, mfu_989=tok_s * fpt / 989e12,
                    mfu_measured=tok_s * fpt / (peak * 1e12), first_loss=losses[impl])
            del model, hf
            torch.cuda.empty_cache()
        ref = losses.get("hf")
        for impl, loss in losses.items():
            if ref is not None and abs(loss - ref) > 2e-2:  # bf16 autocast on identical weights and data
                raise SystemExit(f"first-step losses differ beyond bf16 tolerance ({mode}): {losses}")
    res.done()
    print(f"\n{describe(res.data['environment'])}; bf16 matmul measured {peak:.0f} TFLOP/s")
    print(f"{'model':<18} {'mode':<8} {'tokens/s':>10} {'MFU(989)':>9} {'MFU(meas)':>10}")
    for r in res.data["rows"]:
        print(f"{LABELS[r['impl']]:<18} {r['mode']:<8} {r['tokens_per_s']:>10.0f} {r['mfu_989']:>9.1%} "
              f"{r['mfu_measured']:>10.1%}")


if __name__ == "__main__":
    main()
