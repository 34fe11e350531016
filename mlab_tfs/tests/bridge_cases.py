"""The models the bridge tests run through ``mlab_tfs.as_transformers``: every course class
on a tiny seeded checkpoint, with transformers' class of the same name on the same folder
and a padded batch for it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import transformers

from mlab_tfs.testing import tiny


@dataclasses.dataclass(frozen=True)
class Case:
    part: str  # gpt2, bert, deberta, llama
    name: str  # our class name = transformers' class name
    checkpoint: str  # which tiny checkpoint (key of CHECKPOINTS)
    main: str  # the output compared: logits or last_hidden_state

    @property
    def id(self) -> str:
        return f"{self.name}-{self.checkpoint}"


CASES = [
    Case("gpt2", "GPT2Model", "gpt2", "last_hidden_state"),
    Case("gpt2", "GPT2LMHeadModel", "gpt2", "logits"),
    Case("bert", "BertModel", "bert_model", "last_hidden_state"),
    Case("bert", "BertForMaskedLM", "bert_mlm", "logits"),
    Case("bert", "BertForSequenceClassification", "bert_classifier", "logits"),
    Case("deberta", "DebertaV2Model", "deberta", "last_hidden_state"),
    Case("deberta", "DebertaV2ForMaskedLM", "deberta", "logits"),
    # Variants: an untied GPT-2 head, DeBERTa-v3's own MLM head (legacy=False, lm_predictions.*).
    Case("gpt2", "GPT2LMHeadModel", "gpt2_untied", "logits"),
    Case("deberta", "DebertaV2ForMaskedLM", "deberta_v3", "logits"),
    # The Llama family: grouped-query attention and an untied head; llama3 rope and head_dim != C / nh.
    Case("llama", "LlamaForCausalLM", "llama", "logits"),
    Case("llama", "LlamaModel", "llama_rope", "last_hidden_state"),
]

CAUSAL_LMS = ("GPT2LMHeadModel", "LlamaForCausalLM")  # the classes that generate


def write_checkpoints(root: Path) -> dict[str, Path]:
    """Every tiny checkpoint the cases load, written once under root."""
    return {
        "gpt2": tiny.gpt2_checkpoint(root / "gpt2"),
        "gpt2_untied": tiny.gpt2_checkpoint(root / "gpt2_untied", "untied_erf_gelu_inverse_layer_scale", seed=3),
        "bert_model": tiny.bert_checkpoint(root / "bert_model", head="model"),
        "bert_mlm": tiny.bert_checkpoint(root / "bert_mlm", head="mlm", seed=1),
        "bert_classifier": tiny.bert_checkpoint(root / "bert_classifier", head="classifier", seed=2),
        "deberta": tiny.deberta_checkpoint(root / "deberta", "v2_conv"),
        "deberta_v3": tiny.deberta_checkpoint(root / "deberta_v3", "v3", seed=5),
        "llama": tiny.llama_checkpoint(root / "llama", "llama/gqa", seed=6),
        "llama_rope": tiny.llama_checkpoint(root / "llama_rope", "llama/llama3_rope_head_dim", seed=7),
    }


def ours(impl: Any, case: Case, folder: Path) -> torch.nn.Module:
    """Our class of the case (from the implementation module impl) loaded from folder, eval mode."""
    return getattr(impl, case.name).from_pretrained(folder).eval()


def theirs(case: Case, folder: Path) -> torch.nn.Module:
    """transformers' class of the same name from folder: fp32, eager attention, eval mode."""
    cls = getattr(transformers, case.name)
    return cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()


def batch(case: Case, config: Any) -> dict[str, torch.Tensor]:
    """A padded batch of three rows for the case's model: left padding for the decoders, right
    padding with token types for the encoders."""
    if case.part in ("gpt2", "llama"):
        ids, mask, _ = tiny.left_padded_batch(config.vocab_size, [5, 3, 7], seed=4)
        return dict(input_ids=ids, attention_mask=mask)
    ids, mask, types = tiny.padded_bert_batch(config.vocab_size, [6, 4, 7], max(config.type_vocab_size, 1), seed=4)
    out = dict(input_ids=ids, attention_mask=mask)
    if config.type_vocab_size > 0:
        out["token_type_ids"] = types
    return out


def real_rows(case: Case, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) at real tokens only (padding rows of a hidden state are not compared:
    transformers' and ours need not agree there); a (B, n) classifier output as it is."""
    if x.dim() == 2:
        return x
    return x[mask.bool()]


def lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Language-model labels of a left-padded batch: -100 on padding and on each row's first
    real token, which is predicted from padding (where two models' hidden states need not agree)."""
    scored = attention_mask.bool() & torch.cat([torch.zeros_like(attention_mask[:, :1]), attention_mask[:, :-1]],
                                               dim=1).bool()
    return input_ids.masked_fill(~scored, -100)
