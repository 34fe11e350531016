"""GPT-2 from scratch. ``mlab_tfs.gpt2`` is the solution; your version lives in ``student.py``."""

from mlab_tfs.gpt2.solution import (
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    KVCache,
    from_hf_state_dict,
    to_hf_state_dict,
)

__all__ = ["GPT2Config", "GPT2LMHeadModel", "GPT2Model", "KVCache", "from_hf_state_dict", "to_hf_state_dict"]
