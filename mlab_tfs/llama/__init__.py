"""The Llama family from scratch (Llama 2/3, Qwen3). ``mlab_tfs.llama`` is the solution; your
version lives in ``student.py``."""

from mlab_tfs.llama.solution import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    from_hf_state_dict,
    to_hf_state_dict,
)

__all__ = ["LlamaConfig", "LlamaForCausalLM", "LlamaModel", "from_hf_state_dict", "to_hf_state_dict"]
