"""README's "Looking inside: hook points" example runs as printed, and does what it says:
the cached pattern is transformers' attention, and the ablation removes exactly head 2's
share of layer 0's attention output. (test_docs runs every snippet; this one checks values.)"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mlab_tfs.assets import course_model_path
from mlab_tfs.testing import tiny
from mlab_tfs.tokenizers import ByteLevelBPETokenizer
from mlab_tfs.testing.compare import assert_close

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(section: str, index: int = 0) -> str:
    """The index-th python block after the heading ``section``."""
    text = README.read_text()
    start = text.index(f"## {section}")
    return re.findall(r"```python\n(.*?)```", text[start:], re.S)[index]


def test_sentence_embedding_example_is_minilm_mean_pooling():
    """The BERT example's sentence embeddings are the demo's (mean pooling over the attention
    mask, normalised: sentence-transformers' recipe for all-MiniLM-L6-v2, tested against
    transformers in the bert part), and its comment about the nearest sentence holds."""
    from mlab_tfs.bert.demo import SentenceEmbedder

    scope = {}
    exec(_example("Using the models", 1), scope)
    texts = ["a storm at sea", "the tempest", "a recipe for soup"]
    assert_close(scope["sentences"], SentenceEmbedder().embed(texts), name="sentence embeddings", atol=1e-5)
    assert scope["token_states"].shape[:2] == scope["batch"]["input_ids"].shape  # one vector per token
    similarity = scope["similarity"]
    assert similarity[0, 1] > similarity[0, 2]


def test_hook_points_example_runs_and_ablates_head_2():
    scope = {}
    exec(_example("Looking inside: hook points"), scope)  # on the course model, as printed
    model, input_ids = scope["model"], scope["input_ids"]
    assert input_ids.tolist() == [ByteLevelBPETokenizer.from_pretrained(course_model_path()).encode("ROMEO: But soft")]

    hf = tiny.hf_gpt2(course_model_path())
    expected = hf(input_ids, output_attentions=True)
    assert_close(scope["out"].logits, expected.logits, name="run_with_cache logits", atol=1e-5)
    assert_close(scope["pattern"], expected.attentions[0], name="blocks.0.attn.hook_pattern", atol=1e-5)

    # By hand: head 2's z times its rows of c_proj, taken out of what layer 0's attention adds.
    hs = model.config.n_embd // model.config.n_head
    z = scope["cache"]["blocks.0.attn.hook_z"][:, :, 2]  # (B, T, hs)
    head_2 = z @ model.transformer.h[0].attn.c_proj.weight[:, 2 * hs : 3 * hs].T  # (B, T, C)
    by_hand = model.run_with_hooks(
        input_ids, fwd_hooks=[("blocks.0.hook_attn_out", lambda a, hook: a - head_2)]
    )
    assert_close(scope["ablated"].logits, by_hand.logits, name="logits with head 2 of layer 0 ablated", atol=1e-5)
    assert (scope["ablated"].logits - scope["out"].logits).abs().max() > 1e-3  # the head did matter
