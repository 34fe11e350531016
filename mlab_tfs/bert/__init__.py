"""BERT from scratch. ``mlab_tfs.bert`` is the solution; your version lives in ``student.py``."""

from mlab_tfs.bert.solution import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
    from_hf_state_dict,
    to_hf_state_dict,
)

__all__ = [
    "BertConfig",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertModel",
    "BertPreTrainedModel",
    "from_hf_state_dict",
    "to_hf_state_dict",
]
