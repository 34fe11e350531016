"""Our GPT2LMHeadModel, unchanged, in transformers' Trainer: the same losses as transformers'
own GPT-2 step for step, and checkpoints that save, load and resume."""

from __future__ import annotations

import warnings

import pytest
import torch

from mlab_tfs.assets import shakespeare_text
from mlab_tfs.tokenizers import ByteLevelBPETokenizer
from mlab_tfs.training.hf import BlockDataset, hf_bpe_tokenizer, twin_gpt2

transformers = pytest.importorskip("transformers")

BLOCK = 64
TINY = dict(n_positions=BLOCK, n_embd=32, n_layer=2, n_head=4)


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """(our BPE tokenizer with 512 tokens, transformers' fast tokenizer on its files, 400 blocks of 64 tokens)."""
    text = shakespeare_text()[:300_000]
    tok = ByteLevelBPETokenizer().train(text, 512, special_tokens=["<|endoftext|>"])
    folder = tmp_path_factory.mktemp("bpe")
    tok.save_pretrained(folder)
    return tok, hf_bpe_tokenizer(folder), BlockDataset(tok.encode(text), BLOCK, 400)


def trainer(model, dataset, hf_tok, out, **args):
    defaults = dict(output_dir=str(out), per_device_train_batch_size=8, max_steps=60, logging_steps=1,
                    learning_rate=3e-3, warmup_steps=5, lr_scheduler_type="cosine", seed=0, report_to=[],
                    save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    collator = transformers.DataCollatorForLanguageModeling(hf_tok, mlm=False)  # labels = inputs, pad -> -100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.Trainer(model=model, args=transformers.TrainingArguments(**{**defaults, **args}),
                                    train_dataset=dataset, data_collator=collator)


def step_losses(t) -> list[float]:
    return [h["loss"] for h in t.state.log_history if "loss" in h]


@pytest.mark.solution_only
def test_trainer_losses_equal_transformers(shakespeare, tmp_path):
    """60 steps, warmup + cosine, gradient clipping (Trainer's default max_grad_norm=1):
    every step's loss equals transformers' within 1e-4 (measured: ~1e-6).

    Trainer's defaults: both models take num_items_in_batch, so both report the batch's
    summed loss over Trainer's label count (see the next test for accumulation)."""
    _, hf_tok, data = shakespeare
    hf, ours = twin_gpt2(seed=0, vocab_size=512, **TINY)
    theirs = trainer(hf, data, hf_tok, tmp_path / "hf")
    theirs.train()
    mine = trainer(ours, data, hf_tok, tmp_path / "ours")
    mine.train()
    a, b = torch.tensor(step_losses(theirs)), torch.tensor(step_losses(mine))
    assert len(a) == len(b) == 60
    torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    assert a[-1] < a[0] - 0.5  # and it is really training


@pytest.mark.solution_only
def test_trainer_default_loss_scaling_matches(shakespeare, tmp_path):
    """Trainer's defaults, with gradient accumulation: transformers' GPT-2 gets num_items_in_batch."""
    _, hf_tok, data = shakespeare
    hf, ours = twin_gpt2(seed=1, vocab_size=512, **TINY)
    runs = []
    for model, name in ((hf, "hf"), (ours, "ours")):
        t = trainer(model, data, hf_tok, tmp_path / name, max_steps=20, gradient_accumulation_steps=2)
        t.train()
        runs.append(torch.tensor(step_losses(t)))
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=1e-4)


@pytest.mark.solution_only
def test_trainer_decays_the_same_parameters(shakespeare, tmp_path):
    _, hf_tok, data = shakespeare
    hf, ours = twin_gpt2(seed=0, vocab_size=512, **TINY)
    theirs = set(trainer(hf, data, hf_tok, tmp_path).get_decay_parameter_names(hf))
    mine = set(trainer(ours, data, hf_tok, tmp_path).get_decay_parameter_names(ours))
    assert mine == theirs


@pytest.mark.solution_only
def test_trainer_checkpoint_saves_tied_weights_once_and_resumes(shakespeare, tmp_path):
    """Trainer writes model.safetensors (the tied head once), it loads back into a tied model,
    and resuming from step 10 gives steps 11..20 the losses of an uninterrupted run (1e-6:
    the same computation, reloaded state)."""
    from safetensors.torch import load_file

    _, hf_tok, data = shakespeare
    _, ours = twin_gpt2(seed=2, vocab_size=512, **TINY)
    initial = {k: v.clone() for k, v in ours.state_dict().items()}
    full = trainer(ours, data, hf_tok, tmp_path / "full", max_steps=20)
    full.train()

    def fresh():
        _, model = twin_gpt2(seed=2, vocab_size=512, **TINY)
        model.load_state_dict(initial)
        return model

    saving = trainer(fresh(), data, hf_tok, tmp_path / "saving", max_steps=20, save_strategy="steps", save_steps=10)
    saving.train()
    ckpt = tmp_path / "saving" / "checkpoint-10"
    saved = load_file(ckpt / "model.safetensors")
    assert "transformer.wte.weight" in saved and "lm_head.weight" not in saved
    reloaded = fresh()
    reloaded.load_state_dict(saved, strict=True)
    assert reloaded.lm_head.weight is reloaded.transformer.wte.weight  # still tied after loading

    resumed = trainer(fresh(), data, hf_tok, tmp_path / "saving", max_steps=20)
    resumed.train(resume_from_checkpoint=str(ckpt))
    a, b = torch.tensor(step_losses(full)), torch.tensor(step_losses(resumed))
    assert len(b) == 20
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    final = resumed.model.state_dict()
    torch.testing.assert_close(final, full.model.state_dict(), rtol=0, atol=1e-6)


@pytest.mark.solution_only
def test_trainer_evaluate_and_predict_equal_transformers(shakespeare, tmp_path):
    """The raw model under Trainer.evaluate and Trainer.predict (no training): the eval loss and
    every logit equal transformers' twin's within fp32 1e-5."""
    _, hf_tok, data = shakespeare
    hf, ours = twin_gpt2(seed=0, vocab_size=512, **TINY)
    rows = torch.utils.data.Subset(data, range(4))
    results = []
    for model, out in ((hf, "hf"), (ours, "ours")):
        t = trainer(model, data, hf_tok, tmp_path / out, per_device_eval_batch_size=4)
        results.append((t.evaluate(rows)["eval_loss"], torch.as_tensor(t.predict(rows).predictions)))
    (loss_hf, logits_hf), (loss_ours, logits_ours) = results
    assert logits_ours.shape == logits_hf.shape == (4, BLOCK, 512)
    torch.testing.assert_close(logits_ours, logits_hf, rtol=0, atol=1e-5)
    assert loss_ours == pytest.approx(loss_hf, abs=1e-5) and 5.0 < loss_hf < 7.0  # ~ln 512 at the start
