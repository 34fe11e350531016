"""Tiny random Hugging Face checkpoints to test against (no network, no real weights).

Each is a seeded transformers model written with ``save_pretrained`` to a folder, which
both implementations then load. Layer-norm weights and all biases are randomised too:
left at transformers' 1 and 0 they would hide bugs such as a swapped weight and bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# Small, but each one exercises something different.
GPT2_CONFIGS: dict[str, dict[str, Any]] = {
    "base": dict(vocab_size=97, n_positions=40, n_embd=32, n_layer=2, n_head=4),
    "deep_narrow_heads": dict(
        vocab_size=61, n_positions=24, n_embd=48, n_layer=3, n_head=6, n_inner=80,
        layer_norm_epsilon=1e-3, initializer_range=0.1,
    ),
    "untied_erf_gelu_inverse_layer_scale": dict(
        vocab_size=50, n_positions=33, n_embd=24, n_layer=2, n_head=1, activation_function="gelu",
        tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True, initializer_range=0.08,
    ),
    "wide_unscaled": dict(
        vocab_size=128, n_positions=64, n_embd=64, n_layer=1, n_head=8, scale_attn_weights=False,
        initializer_range=0.05,
    ),
}


def edited_checkpoint(src: Path, dst: Path, edit) -> Path:
    """A copy of the checkpoint folder src in dst, its tensors changed in place by edit(state)."""
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    state = load_file(src / "model.safetensors")
    edit(state)
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst



def assert_load_lists(model_class, folder: Path, missing: str, unexpected: str, mismatched: str) -> None:
    """model_class.from_pretrained(folder) refuses a checkpoint with one missing key, one
    unexpected key and one shape mismatch, and its CheckpointError lists each of them once
    (``missing`` / ``unexpected``: a key or part of it; ``mismatched``: the whole line,
    "<key>: checkpoint <shape>, model <shape>")."""
    import pytest

    from mlab_tfs.checkpoints import CheckpointError

    with pytest.raises(CheckpointError) as info:
        model_class.from_pretrained(folder)
    message = str(info.value)
    assert "missing keys (1)" in message and missing in message, message
    assert "unexpected keys (1)" in message and unexpected in message, message
    assert "shape mismatches (1)" in message and mismatched in message, message

def load_submodule(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str = "",
                   only_its_keys: bool = False) -> torch.nn.Module:
    """Load the entries of a whole model's state dict (our names) under ``prefix``, with the
    prefix stripped, into ``module`` (a layer, a block, a body), strictly; return it in eval
    mode. only_its_keys: leave out keys the module doesn't have (another head's)."""
    wanted = module.state_dict() if only_its_keys else None
    sub = {k[len(prefix):]: v for k, v in state.items()
           if k.startswith(prefix) and (wanted is None or k[len(prefix):] in wanted)}
    module.load_state_dict(sub, strict=True)
    return module.eval()


def randomize_(model: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """Move layer-norm weights away from 1 and biases away from 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name or "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def gpt2_checkpoint(folder: str | Path, name: str = "base", seed: int = 0, **overrides: Any) -> Path:
    """Write a seeded random transformers GPT2LMHeadModel to folder; return the folder."""
    import transformers

    kwargs = {**GPT2_CONFIGS[name], **overrides}
    kwargs.setdefault("bos_token_id", 0)  # the default 50256 is outside a tiny vocabulary
    kwargs.setdefault("eos_token_id", 0)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs))
    randomize_(model, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def hf_gpt2(folder: str | Path, attn_implementation: str = "eager"):
    """transformers' GPT2LMHeadModel from a folder, fp32, eval mode."""
    import transformers

    return transformers.GPT2LMHeadModel.from_pretrained(
        folder, attn_implementation=attn_implementation, dtype=torch.float32
    ).eval()


def left_padded_batch(
    vocab_size: int, lengths: list[int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random prompts of the given lengths, left-padded (pad id 0) to the longest.

    Returns input_ids, attention_mask and position ids counted over real tokens,
    cumsum(mask) - 1, with padding at position 1 (any valid position would do: it is masked).
    """
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(0, vocab_size, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, T - n :] = 1
    ids = ids.masked_fill(mask == 0, 0)
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    return ids, mask, position_ids


# ---------------------------------------------------------------------------------------
# BERT
# ---------------------------------------------------------------------------------------

# Small, but each varies something: width, heads, depth, MLP width, eps, segments, labels,
# positions. initializer_range above BERT's 0.02 gives attention patterns far from uniform,
# where a missing scale or a misplaced mask shows.
BERT_CONFIGS: dict[str, dict[str, Any]] = {
    "base": dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=40, type_vocab_size=2, num_labels=3, initializer_range=0.2),
    "deep_narrow_heads": dict(
        vocab_size=61, hidden_size=24, num_hidden_layers=3, num_attention_heads=6, intermediate_size=50,
        max_position_embeddings=24, type_vocab_size=3, layer_norm_eps=1e-3, num_labels=2, initializer_range=0.3,
    ),
    "one_head_regression": dict(
        vocab_size=128, hidden_size=48, num_hidden_layers=1, num_attention_heads=1, intermediate_size=96,
        max_position_embeddings=64, type_vocab_size=1, num_labels=1, initializer_range=0.15, pad_token_id=3,
    ),
    "multi_label": dict(
        vocab_size=80, hidden_size=40, num_hidden_layers=2, num_attention_heads=5, intermediate_size=64,
        max_position_embeddings=33, type_vocab_size=4, num_labels=4, initializer_range=0.25, layer_norm_eps=1e-6,
        problem_type="multi_label_classification",
    ),
}

BERT_HEADS = ("model", "mlm", "pretraining", "classifier")


def _bert_class(head: str):
    import transformers

    classes = dict(model=transformers.BertModel, mlm=transformers.BertForMaskedLM,
                   pretraining=transformers.BertForPreTraining, classifier=transformers.BertForSequenceClassification)
    if head not in classes:
        raise ValueError(f"head must be one of {BERT_HEADS}, got {head!r}")
    return classes[head]


def bert_checkpoint(folder: str | Path, name: str = "base", seed: int = 0, head: str = "model",
                    **overrides: Any) -> Path:
    """Write a seeded random transformers BERT to folder; return the folder.

    head: "model" (BertModel), "mlm" (BertForMaskedLM), "pretraining" (BertForPreTraining)
    or "classifier" (BertForSequenceClassification).
    """
    import transformers

    kwargs = {**BERT_CONFIGS[name], **overrides}
    torch.manual_seed(seed)
    model = _bert_class(head)(transformers.BertConfig(**kwargs))
    randomize_(model, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def hf_bert(folder: str | Path, head: str = "model", attn_implementation: str = "eager"):
    """transformers' BERT class for head from a folder, fp32, eval mode.

    Eager attention by default: it adds the same finfo.min mask as ours, where sdpa's
    kernels may treat padding rows differently.
    """
    return _bert_class(head).from_pretrained(
        folder, attn_implementation=attn_implementation, dtype=torch.float32
    ).eval()


def padded_bert_batch(
    vocab_size: int, lengths: list[int], type_vocab_size: int = 2, pad_token_id: int = 0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random sequences of the given lengths, right-padded (as BERT tokenizers pad) with pad_token_id.

    Returns input_ids, attention_mask and token_type_ids: segment 0 for the first half of
    each sequence, then 1 (or 0 if type_vocab_size is 1), and 0 on padding.
    """
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(0, vocab_size, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    types = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        types[b, n // 2 : n] = min(1 + b % 3, type_vocab_size - 1)
    ids = ids.masked_fill(mask == 0, pad_token_id)
    return ids, mask, types


# DeBERTa-v2: together the configs switch on each option of the architecture at least once and
# off at least once; all but one use relative attention (transformers' own tiny tests turn it off).
DEBERTA_COMMON = dict(vocab_size=83, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
               max_position_embeddings=24)

DEBERTA_CONFIGS: dict[str, dict[str, Any]] = {
    # DeBERTa-v3's settings: both terms, log buckets, shared keys, normed table, no absolute positions.
    "v3": dict(DEBERTA_COMMON, relative_attention=True, pos_att_type="p2c|c2p", position_buckets=8,
               max_relative_positions=-1, share_att_key=True, norm_rel_ebd="layer_norm",
               position_biased_input=False, type_vocab_size=0, legacy=False),
    # DeBERTa-v2 xlarge's: the same plus the convolution, token types, the legacy tied head.
    "v2_conv": dict(DEBERTA_COMMON, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16,
                    max_relative_positions=20, share_att_key=True, norm_rel_ebd="layer_norm",
                    conv_kernel_size=3, conv_act="gelu", position_biased_input=False, type_vocab_size=2,
                    layer_norm_eps=1e-5),
    # c2p only, separate pos_key_proj, clamped distances (k = 3 < T), absolute positions,
    # embedding_size != hidden_size (embed_proj), gelu_new.
    "c2p_embed_proj": dict(DEBERTA_COMMON, num_hidden_layers=3, relative_attention=True, pos_att_type=["c2p"],
                           max_relative_positions=3, position_biased_input=True, embedding_size=24,
                           type_vocab_size=2, hidden_act="gelu_new", initializer_range=0.05),
    # p2c only, separate pos_query_proj, tiny log buckets, a grouped width-5 convolution, untied head.
    "p2c_buckets_untied": dict(DEBERTA_COMMON, num_attention_heads=2, relative_attention=True, pos_att_type="p2c",
                               position_buckets=4, max_relative_positions=20, position_biased_input=True,
                               conv_kernel_size=5, conv_groups=2, type_vocab_size=0, tie_word_embeddings=False,
                               layer_norm_eps=1e-3),
    # Both terms with their own projections, no buckets, k = max_position_embeddings = 8 < T
    # (allowed: without absolute positions the length is not limited).
    "both_unshared": dict(DEBERTA_COMMON, max_position_embeddings=8, relative_attention=True, pos_att_type=["c2p", "p2c"],
                          share_att_key=False, position_biased_input=False, type_vocab_size=0),
    # BERT-like: no relative attention at all.
    "absolute_only": dict(DEBERTA_COMMON, relative_attention=False, position_biased_input=True, type_vocab_size=2),
}


def deberta_checkpoint(folder: str | Path, name: str, seed: int = 0, **overrides: Any) -> Path:
    """Write a seeded random transformers DebertaV2ForMaskedLM to folder; return the folder."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.DebertaV2ForMaskedLM(transformers.DebertaV2Config(**{**DEBERTA_CONFIGS[name], **overrides}))
    randomize_(model, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def hf_deberta(folder: str | Path):
    """transformers' DebertaV2ForMaskedLM from a folder, fp32, eval mode."""
    import transformers

    return transformers.DebertaV2ForMaskedLM.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32
    ).eval()


# ---------------------------------------------------------------------------------------
# Llama and Qwen3
# ---------------------------------------------------------------------------------------

# Each varies something the Llama family has and GPT-2 has not: grouped-query attention
# (num_key_value_heads < num_attention_heads), a head_dim that is not hidden/heads, Llama 3's
# rope scaling (its frequency bands placed so that all three occur at hd = 16), attention and
# MLP biases, a tied head, Qwen3's QK-norm. initializer_range 0.2 gives patterns far from uniform.
LLAMA_CONFIGS: dict[str, dict[str, Any]] = {
    "gqa": dict(vocab_size=97, hidden_size=32, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2, rms_norm_eps=1e-5,
                pad_token_id=0),
    "llama3_rope_head_dim": dict(
        vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=128, initializer_range=0.2,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=64)),
    "tied_bias": dict(vocab_size=50, hidden_size=24, intermediate_size=64, num_hidden_layers=3, num_attention_heads=3,
                      num_key_value_heads=3, max_position_embeddings=48, tie_word_embeddings=True,
                      attention_bias=True, mlp_bias=True, initializer_range=0.2, rms_norm_eps=1e-3,
                      rope_parameters=dict(rope_type="default", rope_theta=100.0)),
}
QWEN3_CONFIGS: dict[str, dict[str, Any]] = {
    "qk_norm": dict(vocab_size=80, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=12, max_position_embeddings=64, initializer_range=0.2,
                    rope_parameters=dict(rope_type="default", rope_theta=1000.0)),
    "qk_norm_tied": dict(vocab_size=70, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                         tie_word_embeddings=True, attention_bias=True, initializer_range=0.2),
}
LLAMA_FAMILY = {**{f"llama/{k}": ("llama", v) for k, v in LLAMA_CONFIGS.items()},
                **{f"qwen3/{k}": ("qwen3", v) for k, v in QWEN3_CONFIGS.items()}}


def _llama_classes(model_type: str):
    import transformers

    if model_type == "llama":
        return transformers.LlamaConfig, transformers.LlamaForCausalLM
    if model_type == "qwen3":
        return transformers.Qwen3Config, transformers.Qwen3ForCausalLM
    raise ValueError(f"model_type must be 'llama' or 'qwen3', got {model_type!r}")


def llama_checkpoint(folder: str | Path, name: str = "llama/gqa", seed: int = 0, **overrides: Any) -> Path:
    """Write a seeded random transformers LlamaForCausalLM or Qwen3ForCausalLM (``name`` a key
    of LLAMA_FAMILY: "llama/gqa", "qwen3/qk_norm", ...) to folder; return the folder. RMSNorm
    weights and biases are randomised too."""
    model_type, kwargs = LLAMA_FAMILY[name]
    config_class, model_class = _llama_classes(model_type)
    torch.manual_seed(seed)
    model = model_class(config_class(**{**kwargs, **overrides}))
    randomize_(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # RMSNorm weights (input_layernorm, q_norm, model.norm...) away from 1
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def hf_llama(folder: str | Path, attn_implementation: str = "eager"):
    """transformers' LlamaForCausalLM or Qwen3ForCausalLM (by config.json's model_type) from
    a folder, fp32, eval mode."""
    import json

    model_type = json.loads((Path(folder) / "config.json").read_text())["model_type"]
    return _llama_classes(model_type)[1].from_pretrained(
        folder, attn_implementation=attn_implementation, dtype=torch.float32).eval()
