"""DeBERTa-v2/v3 from scratch. ``mlab_tfs.deberta`` is the solution; your version lives in ``student.py``;
what the part gives both lives in ``given.py``."""

from mlab_tfs.deberta.solution import (
    PARTS,
    DebertaV2Config,
    DebertaV2Embeddings,
    DebertaV2Encoder,
    DebertaV2ForMaskedLM,
    DebertaV2Layer,
    DebertaV2Model,
    DebertaV2Parts,
    DisentangledSelfAttention,
    build_relative_position,
    c2p_scores,
    make_log_bucket_position,
    mlm_from_hf_state_dict,
    mlm_to_hf_state_dict,
    model_from_hf_state_dict,
    model_to_hf_state_dict,
    p2c_scores,
)

__all__ = [
    "PARTS",
    "DebertaV2Config",
    "DebertaV2Embeddings",
    "DebertaV2Encoder",
    "DebertaV2ForMaskedLM",
    "DebertaV2Layer",
    "DebertaV2Model",
    "DebertaV2Parts",
    "DisentangledSelfAttention",
    "build_relative_position",
    "c2p_scores",
    "make_log_bucket_position",
    "mlm_from_hf_state_dict",
    "mlm_to_hf_state_dict",
    "model_from_hf_state_dict",
    "model_to_hf_state_dict",
    "p2c_scores",
]
