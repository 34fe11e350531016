"""Training-step throughput of GPT-2 124M: ours vs transformers, eager and torch.compile.

    python benchmarks/gpt2_train.py --out results.json        # on a CUDA machine

Both models get the same random weights (the real GPT2Config() shape), the same batches,
bf16 autocast, fused AdamW, sdpa attention. Before timing, the first step's losses of the
two are compared and the run stops if they differ beyond bf16 tolerance.

MFU counts 6 N FLOPs per token for the parameter matmuls (N without the position table:
the tied embedding is also the LM head's matmul) plus 12 L C T for attention scores and
values (forward and backward), as in the PaLM paper's appendix B, over two peaks: the
H100's 989 TFLOP/s dense bf16 datasheet figure and the bf16 matmul rate measured here.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


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
    if impl == "hf":
        return hf_model
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel, from_hf_state_dict

    cfg = GPT2Config.from_dict({**config.to_dict(), "attn_implementation": "sdpa"})
    ours = GPT2LMHeadModel(cfg)
    ours.load_state_dict(from_hf_state_dict(hf_model.state_dict(), cfg))
    return ours.cuda()


def time_training(model, batches, steps: int, warmup: int, compile_: bool) -> tuple[float, float]:
    """(tokens per second, first loss)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if compile_ else model
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


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    config = transformers.GPT2Config(n_positions=max(1024, args.seq), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=g).cuda() for _ in range(4)]
    n_params = None
    rows = []
    peak_measured = measured_matmul_tflops()
    for mode in args.modes.split(","):
        losses = {}
        for impl in ("ours", "hf"):
            torch.manual_seed(0)
            hf = transformers.GPT2LMHeadModel(config)
            model = build(impl, hf, config).cuda()
            if n_params is None:
                n_params = sum(p.numel() for n, p in model.named_parameters() if "wpe" not in n)
            tok_s, losses[impl] = time_training(model, batches, args.steps, args.warmup, mode == "compile")
            flops_per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * args.seq
            rows.append(dict(impl=impl, mode=mode, tokens_per_s=tok_s,
                             mfu_989=tok_s * flops_per_token / 989e12,
                             mfu_measured=tok_s * flops_per_token / (peak_measured * 1e12)))
            print(rows[-1], flush=True)
            del model, hf
            torch.cuda.empty_cache()
        if abs(losses["ours"] - losses["hf"]) > 2e-2:  # bf16 autocast on identical weights and data
            raise SystemExit(f"first-step losses differ beyond bf16 tolerance: {losses}")
    info = dict(card=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__,
                python=platform.python_version(), batch=args.batch, seq=args.seq,
                matmul_tflops_measured=peak_measured, params_without_wpe=n_params, rows=rows)
    print(f"\n{info['card']}, torch {info['torch']}, transformers {info['transformers']}, "
          f"bf16 matmul measured {peak_measured:.0f} TFLOP/s")
    print(f"{'impl':<6} {'mode':<8} {'tokens/s':>10} {'MFU(989)':>9} {'MFU(meas)':>10}")
    for r in rows:
        print(f"{r['impl']:<6} {r['mode']:<8} {r['tokens_per_s']:>10.0f} {r['mfu_989']:>9.1%} {r['mfu_measured']:>10.1%}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
