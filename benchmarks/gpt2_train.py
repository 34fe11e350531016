"""Training-step throughput of GPT-2 124M: ours vs transformers, eager and torch.compile, one row per lever.

    python benchmarks/gpt2_train.py --out train.json        # on a CUDA machine
    python benchmarks/gpt2_train.py --smoke                 # a tiny model on the CPU, a few steps: the code runs

Both models get the same random weights (the real GPT2Config() shape), the same batches
(--batch sequences of --seq tokens, the same for ours and transformers), bf16 autocast,
AdamW, sdpa attention. A row is a model with its levers and a mode (--rows):

  models   hf                 transformers' GPT2LMHeadModel
           ours               ours as it is
           ours+hand          mlab_tfs.gpt2.fast.use_fused_ops(model, False): the hand-written
                              layer norms and GELU (the default runs F.layer_norm; GELU in bf16
                              is gelu_new's formula either way, as transformers')
           ours+pad           mlab_tfs.gpt2.fast.pad_vocab(model, --pad-vocab): 50257 -> 50304 rows, the
                              loss over all 50304 columns (the padded ones -inf), logits the first 50257
           ours+chunked       the loss as mlab_tfs.gpt2.fast.chunked_lm_loss (no (B, T, V) float32 copies;
                              with +pad over the full padded width too)
           (levers combine: ours+pad+chunked, ours+hand+pad...)
  modes    eager              fused AdamW (one kernel for every parameter)
           compile            torch.compile of the forward and loss; fused AdamW
           compile+opt        the same, and the optimizer step compiled too (torch.compile of opt.step:
                              inductor writes the AdamW update as its own fused kernels)
           compile+graphs     compile+opt with mode="reduce-overhead": the forward and backward
                              replayed as CUDA graphs (checked like every row, see below)

Before timing counts, every row's losses over its untimed warm-up steps (forward, backward,
optimizer step) are compared with the reference row's (transformers eager when it runs, else
the first row): the first step within 2e-2, the later ones (after optimizer steps) within
5e-2 under bf16 autocast; the run stops if they differ (1e-4 in float32 with --smoke).

MFU counts 6 N FLOPs per token for the parameter matmuls (N without the position table:
the tied embedding is also the LM head's matmul; the unpadded N for every row, so a padded
row's MFU is useful work only) plus 12 L C T for attention scores and values (forward and
backward), as in the PaLM paper's appendix B, over two peaks: the H100/H200's 989 TFLOP/s
dense bf16 datasheet figure and the bf16 matmul rate measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from _common import Results, describe, log, require_cuda

MODELS = ("ours", "hf")
LEVERS = ("hand", "pad", "chunked")
MODES = ("eager", "compile", "compile+opt", "compile+graphs")
LEVER_LABELS = {"hand": "hand-written ops", "pad": "padded vocab", "chunked": "chunked loss"}
DEFAULT_ROWS = ("eager=ours,ours+hand,ours+pad,hf;compile=ours,ours+pad,ours+pad+chunked,hf;"
                "compile+opt=ours+pad,hf")
SMOKE_ROWS = "eager=ours,ours+hand,ours+pad,ours+chunked,ours+pad+chunked,hf"


def parse_impl(impl: str) -> tuple[str, frozenset[str]]:
    """'ours+pad+chunked' -> ('ours', {'pad', 'chunked'}); SystemExit naming what is unknown."""
    model, *levers = impl.split("+")
    if model not in MODELS:
        raise SystemExit(f"unknown model {model!r} in {impl!r}; expected one of {MODELS}")
    bad = [lv for lv in levers if lv not in LEVERS]
    if bad:
        raise SystemExit(f"unknown lever(s) {bad} in {impl!r}; expected some of {LEVERS}")
    if model == "hf" and levers:
        raise SystemExit(f"{impl!r}: the levers are ours; transformers runs as it is")
    return model, frozenset(levers)


def label(impl: str) -> str:
    model, levers = parse_impl(impl)
    if model == "hf":
        return "transformers"
    return " + ".join(["ours", *(LEVER_LABELS[lv] for lv in LEVERS if lv in levers)])


class _Labels(dict):
    def __missing__(self, impl: str) -> str:
        return label(impl)


LABELS = _Labels()  # impl -> its name in tables (gpt2_ddp.py reads it too)


def parse_rows(spec: str) -> list[tuple[str, list[str]]]:
    """'eager=ours,hf;compile=ours' -> [('eager', ['ours', 'hf']), ('compile', ['ours'])]."""
    rows = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        mode, _, impls = part.partition("=")
        if mode not in MODES or not impls:
            raise SystemExit(f"--rows: {part!r} must be MODE=IMPL,IMPL with MODE one of {MODES}")
        for impl in impls.split(","):
            parse_impl(impl)
        rows.append((mode, impls.split(",")))
    return rows


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


def build(impl: str, hf_model, config, device: str = "cuda", pad_multiple: int = 64):
    """The model to time: transformers' own, or ours with the same weights and the impl's levers."""
    model_name, levers = parse_impl(impl)
    if model_name == "hf":
        return hf_model.to(device)
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel, from_hf_state_dict
    from mlab_tfs.gpt2.fast import pad_vocab, use_fused_ops

    cfg = GPT2Config.from_dict({**config.to_dict(), "attn_implementation": "sdpa"})
    ours = GPT2LMHeadModel(cfg)
    ours.load_state_dict(from_hf_state_dict(hf_model.state_dict(), cfg))
    if "hand" in levers:
        use_fused_ops(ours, False)
    if "pad" in levers:
        pad_vocab(ours, pad_multiple)
    return ours.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_training(model, batches, steps: int, warmup: int, compile_: bool | str, wrap=None, chunked: bool = False,
                  device: str = "cuda", autocast: bool = True, losses: list | None = None) -> tuple[float, float]:
    """(tokens per second, first loss). compile_: a mode of MODES (True: "compile", False:
    "eager"). wrap: applied to the model before compiling (e.g. DDP). chunked: the loss
    through chunked_lm_loss, over the logits the model's own loss reads (a padded
    vocabulary's full width; not with wrap, as it calls the model's body and head). losses:
    if given, the warm-up steps' losses are appended."""
    from mlab_tfs.gpt2.fast import chunked_lm_loss, logits_for_loss

    mode = {True: "compile", False: "eager"}.get(compile_, compile_)
    if mode not in MODES:
        raise ValueError(f"compile_ must be a bool or one of {MODES}, got {compile_!r}")
    if chunked and wrap is not None:
        raise ValueError("chunked=True reads the model's body and head directly, past a wrapper; not with wrap")
    model.train()
    on_cuda = device.startswith("cuda")
    compiled_step = mode in ("compile+opt", "compile+graphs")
    if compiled_step:
        # On a GPU a tensor lr (PyTorch's compiled-optimizer recipe: a schedule changing it would not
        # recompile), which needs capturable=True; on the CPU (--smoke) a float.
        lr = torch.tensor(3e-4, device=device) if on_cuda else 3e-4
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, foreach=True, capturable=on_cuda)
        step = torch.compile(opt.step, fullgraph=False)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=on_cuda or None)
        step = opt.step
    fwd = wrap(model) if wrap is not None else model
    graphs = {"mode": "reduce-overhead"} if mode == "compile+graphs" and on_cuda else {}
    if mode != "eager" and not chunked:
        fwd = torch.compile(fwd, **graphs)  # the module, its loss inside (as before the levers: DDP too)

    def loss_of(ids):
        if chunked:  # +pad: the full padded width, its padded columns -inf, as the model's own loss
            return chunked_lm_loss(logits_for_loss(model, ids), ids, vocab_size=model.config.vocab_size)
        return fwd(ids, labels=ids).loss

    if mode != "eager" and chunked:
        loss_of = torch.compile(loss_of, **graphs)  # the forward and the chunked loss in one graph
    cast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda and autocast else contextlib.nullcontext()
    first = None
    t = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t = time.perf_counter()
        ids = batches[i % len(batches)]
        if mode == "compile+graphs" and on_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        with cast:
            loss = loss_of(ids)
        loss.backward()
        step()
        opt.zero_grad(set_to_none=True)
        if i < max(warmup, 1):  # untimed: reading the loss synchronises
            value = float(loss.detach())
            first = value if first is None else first
            if losses is not None:
                losses.append(value)
    _sync(device)
    elapsed = time.perf_counter() - t
    return batches[0].numel() * steps / elapsed, first


def hf_config(seq: int, **overrides):
    import transformers

    config = transformers.GPT2Config(n_positions=max(1024, seq), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     **overrides)
    config._attn_implementation = "sdpa"
    return config


# --smoke: small enough for a 2-core CPU, with a vocabulary that pad_vocab pads (1000 -> 1024).
SMOKE_CONFIG = dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, bos_token_id=999, eos_token_id=999)


def flops_per_token(n_params: int, config, seq: int) -> int:
    return 6 * n_params + 12 * config.n_layer * config.n_embd * seq


def check_losses(rows: list[dict], reference: dict, first_tol: float, later_tol: float) -> None:
    """SystemExit if a row's warm-up losses differ from the reference row's beyond the tolerances."""
    ref = reference["warmup_losses"]
    for r in rows:
        got = r["warmup_losses"]
        n = min(len(got), len(ref))
        bad = [(i, got[i], ref[i]) for i in range(n) if abs(got[i] - ref[i]) > (first_tol if i == 0 else later_tol)]
        if bad:
            raise SystemExit(f"losses of {label(r['impl'])} ({r['mode']}) differ from {label(reference['impl'])} "
                             f"({reference['mode']}) beyond tolerance ({first_tol} first step, {later_tol} later): "
                             f"(step, got, reference) {bad}")


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=None, help="sequences per step, ours and transformers alike "
                   "(default 16; 2 with --smoke)")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 1024; 32 with --smoke)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 2 with --smoke)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps whose losses are compared (the compile happens here; default 3; 2 with --smoke)")
    p.add_argument("--rows", default=None, help=f"MODE=IMPL,IMPL;MODE=...  (default {DEFAULT_ROWS!r}; "
                   f"with --smoke {SMOKE_ROWS!r})")
    p.add_argument("--modes", default=None, help="only the rows of these modes, comma-separated")
    p.add_argument("--pad-vocab", type=int, default=64, metavar="MULTIPLE",
                   help="the multiple the +pad rows pad the vocabulary to (default 64: 50257 -> 50304); "
                        "0 leaves the +pad rows out")
    p.add_argument("--smoke", action="store_true", help="a tiny GPT-2 on the CPU in float32, a few steps: "
                   "checks that every row runs and equals transformers; no timing worth reading")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    smoke = args.smoke
    for flag, value, least in (("--batch", args.batch, 1), ("--seq", args.seq, 1), ("--steps", args.steps, 1),
                               ("--warmup", args.warmup, 0)):
        if value is not None and value < least:  # 0 was taken as "the default" before
            raise SystemExit(f"{flag} must be an int >= {least}, got {value}")
    batch = args.batch if args.batch is not None else (2 if smoke else 16)
    seq = args.seq if args.seq is not None else (32 if smoke else 1024)
    steps = args.steps if args.steps is not None else (2 if smoke else 20)
    warmup = args.warmup if args.warmup is not None else (2 if smoke else 3)
    rows = parse_rows(args.rows or (SMOKE_ROWS if smoke else DEFAULT_ROWS))
    if args.modes:
        rows = [(m, i) for m, i in rows if m in args.modes.split(",")]
    if args.pad_vocab == 0:
        rows = [(m, [i for i in impls if "pad" not in parse_impl(i)[1]]) for m, impls in rows]
    elif args.pad_vocab < 0:
        raise SystemExit(f"--pad-vocab must be a positive multiple, or 0 for no +pad rows, got {args.pad_vocab}")
    if smoke:
        device = "cpu"
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    else:
        require_cuda("gpt2_train.py (--smoke runs a tiny model on the CPU)")
        device = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    config = hf_config(seq, **(SMOKE_CONFIG if smoke else {}))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, config.vocab_size, (batch, seq), generator=g).to(device) for _ in range(4)]
    peak = None if smoke else measured_matmul_tflops()
    res = Results(args.out, "train", batch=batch, seq=seq, steps=steps, warmup=warmup, matmul_tflops_measured=peak,
                  smoke=smoke, pad_vocab_multiple=args.pad_vocab, precision="float32" if smoke else "bf16 autocast")
    log(f"{describe(res.data['environment'])}" + (f"; bf16 matmul measured {peak:.0f} TFLOP/s" if peak else
                                                  "; --smoke: a tiny model on the CPU"))
    n_params = None
    for mode, impls in rows:
        for impl in impls:
            log(f"training step: {label(impl)}, {mode} ...")
            torch.manual_seed(0)
            hf = transformers.GPT2LMHeadModel(config)
            if n_params is None:
                n_params = sum(p.numel() for n, p in hf.named_parameters() if "wpe" not in n)
                res.set(params_without_wpe=n_params)
            model = build(impl, hf, config, device, args.pad_vocab)
            warm: list[float] = []
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            tok_s, first = time_training(model, batches, steps, warmup, mode, chunked="chunked" in parse_impl(impl)[1],
                                         device=device, autocast=not smoke, losses=warm)
            fpt = flops_per_token(n_params, config, seq)
            res.add(impl=impl, mode=mode, label=label(impl), tokens_per_s=tok_s,
                    mfu_989=None if smoke else tok_s * fpt / 989e12,
                    mfu_measured=None if smoke else tok_s * fpt / (peak * 1e12), first_loss=first, warmup_losses=warm,
                    peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None)
            del model, hf
            if device == "cuda":
                torch.cuda.empty_cache()
        done = res.data["rows"]
        reference = next((r for r in done if r["impl"] == "hf" and r["mode"] == "eager"), done[0])
        check_losses([r for r in done if r["mode"] == mode], reference, *((1e-4, 1e-4) if smoke else (2e-2, 5e-2)))
    res.done()
    where = describe(res.data["environment"]) + (f"; bf16 matmul measured {peak:.0f} TFLOP/s" if peak else "")
    print(f"\n{where}; batch {batch} x {seq}")
    print(f"{'model':<36} {'mode':<15} {'tokens/s':>10} {'MFU(989)':>9} {'MFU(meas)':>10} {'peak GiB':>9}")
    for r in res.data["rows"]:
        mfu = ("-", "-") if r["mfu_989"] is None else (f"{r['mfu_989']:.1%}", f"{r['mfu_measured']:.1%}")
        mem = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
        print(f"{r['label']:<36} {r['mode']:<15} {r['tokens_per_s']:>10.0f} {mfu[0]:>9} {mfu[1]:>10} {mem:>9}")


if __name__ == "__main__":
    main()
