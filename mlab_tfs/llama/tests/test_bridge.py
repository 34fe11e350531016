"""Our Llama and Qwen3 inside transformers' tools through mlab_tfs.as_transformers: the adapter
has transformers' config class of the family, its generate equals transformers' model's, and
transformers' Trainer gives the same per-step losses as with transformers' own model."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs import as_transformers
from mlab_tfs.checkpoints import read_config
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.tiny import left_padded_batch, llama_checkpoint, hf_llama

from .helpers import GQA, QWEN3, pair


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_adapter_config_and_generate(llama, checkpoints, hf_models, name, tmp_path):
    import transformers

    model, hf = pair(llama, checkpoints, hf_models, name)
    adapter = as_transformers(model)
    assert type(adapter.config) is type(hf.config)
    assert type(adapter).__name__ == type(hf).__name__  # Qwen3ForCausalLM for a qwen3 config
    assert isinstance(adapter, transformers.PreTrainedModel)
    ids, mask, _ = left_padded_batch(model.config.vocab_size, [6, 3], seed=1)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    got = adapter.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(got, expected), (got.tolist(), expected.tolist())
    adapter.save_pretrained(tmp_path / "saved")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    assert type(theirs) is type(hf) and theirs.config.architectures == [type(hf).__name__]


def _losses(model, rows, folder):
    import transformers

    class Record(transformers.TrainerCallback):
        losses: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    record = Record()
    record.losses = []
    args = transformers.TrainingArguments(folder, per_device_train_batch_size=2, max_steps=4, learning_rate=3e-3,
                                          logging_steps=1, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                                          save_strategy="no", gradient_accumulation_steps=2, dataloader_drop_last=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[record])
    trainer.train()
    return torch.tensor(record.losses)


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_trainer_per_step_losses_equal_transformers(llama, tmp_path, name):
    """Four optimizer steps of two accumulated micro-batches (num_items_in_batch reaches the
    loss), left-padded rows with -100 labels on the padding: the same logged losses."""
    folder = llama_checkpoint(tmp_path / "start", name, attention_dropout=0.0)
    ids, mask, _ = left_padded_batch(read_config(folder)["vocab_size"], [8, 5, 7, 3, 8, 6, 2, 8], seed=3)
    rows = [dict(input_ids=i, attention_mask=m, labels=i.masked_fill(m == 0, -100)) for i, m in zip(ids, mask)]
    ours = _losses(as_transformers(llama.LlamaForCausalLM.from_pretrained(folder)), rows, tmp_path / "a")
    theirs = _losses(hf_llama(folder, attn_implementation="sdpa").train(), rows, tmp_path / "b")
    assert len(ours) == 4
    assert_close(ours, theirs, name="Trainer's per-step losses", atol=1e-5)
