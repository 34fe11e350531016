"""Make trainer_losses.png for GUIDE.md: our GPT-2 and transformers' GPT-2 trained by
transformers' Trainer from the same initial weights on the same Shakespeare batches.

    python -m mlab_tfs.training.make_trainer_plot [--steps 400] [--out mlab_tfs/training/trainer_losses.png]

CPU, fp32, a few tens of seconds. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path


def run(steps: int):
    import transformers

    from mlab_tfs.assets import shakespeare_text
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer
    from mlab_tfs.training.hf import BlockDataset, causal_lm_collate, twin_gpt2

    text = shakespeare_text()[:1_000_000]
    tok = ByteLevelBPETokenizer().train(text, 1024, special_tokens=["<|endoftext|>"])
    data = BlockDataset(tok.encode(text), 128)
    hf, ours = twin_gpt2(seed=0, vocab_size=tok.vocab_size, n_positions=128, n_embd=64, n_layer=4, n_head=4)
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("transformers GPT2LMHeadModel", hf), ("mlab_tfs GPT2LMHeadModel", ours)):
            args = transformers.TrainingArguments(
                output_dir=str(Path(tmp) / name.split()[0]), per_device_train_batch_size=16, max_steps=steps,
                logging_steps=1, learning_rate=2e-3, warmup_steps=20, lr_scheduler_type="cosine", seed=0,
                report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                               data_collator=causal_lm_collate)
            trainer.train()
            curves[name] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return curves


def plot(curves: dict[str, list[float]], out: Path) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (a_name, a), (b_name, b) = curves.items()
    diff = [abs(x - y) for x, y in zip(a, b)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4.2), dpi=90, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.2]})
    steps = range(1, len(a) + 1)
    top.plot(steps, a, lw=2.2, alpha=0.6, label=a_name)
    top.plot(steps, b, lw=0.8, ls="--", color="k", label=b_name)
    top.set_ylabel("training loss")
    top.set_title("transformers' Trainer, same weights, data and seed (CPU, fp32)", fontsize=9)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.semilogy(steps, [max(d, 1e-9) for d in diff], lw=0.8)  # exact 0 drawn at 1e-9 (the guide says so)
    bottom.set_ylabel("|difference|")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return max(diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "trainer_losses.png")
    args = parser.parse_args()
    curves = run(args.steps)
    worst = plot(curves, args.out)
    print(f"wrote {args.out}; largest per-step loss difference over {args.steps} steps: {worst:.2e}")


if __name__ == "__main__":
    main()
