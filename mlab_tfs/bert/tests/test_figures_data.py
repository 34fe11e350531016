"""What the BERT guide's figures and its "why" paragraphs show, held to numbers: the padded
batch and its mask (``mlab_tfs/bert/figures.py``), MiniLM's pattern on it against transformers',
and the key bias that shifts a whole row of scores."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bert import figures
from mlab_tfs.testing.compare import assert_close


def test_padded_batch_is_the_one_drawn():
    tokens, ids, mask = figures.padded_batch()
    assert tokens == [["[CLS]", "a", "storm", "at", "sea", "[SEP]"], ["[CLS]", "calm", "[SEP]", "[PAD]", "[PAD]", "[PAD]"]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert ids[1, 3:].tolist() == [0, 0, 0]  # MiniLM's [PAD] is id 0


def test_padding_mask_grid_hides_keys_not_queries():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    grid = figures.padding_mask_grid(mask)  # (B, T, S)
    assert grid.dtype == torch.bool and grid.shape == (3, 4, 4)
    # Every query t of a sequence sees the same keys: the real ones (a hand-built grid).
    expected = torch.tensor([[[True] * 4] * 4, [[True, True, False, False]] * 4, [[False] * 4] * 4])
    assert torch.equal(grid, expected)


def test_padded_pattern_gives_padding_keys_zero_and_matches_transformers():
    import transformers

    from mlab_tfs.assets import minilm_path

    tokens, pattern = figures.padded_pattern(layer=0, head=0)  # (T, S) of the padded row
    assert tokens[3:] == ["[PAD]"] * 3 and pattern.shape == (6, 6)
    assert torch.equal(pattern[:, 3:], torch.zeros(6, 3)), "padding keys must get exactly 0 attention"
    assert_close(pattern.sum(-1), torch.ones(6), name="each query's pattern sums to 1", atol=1e-6)
    # Padding queries are not masked: they attend to the real tokens like any other query.
    assert bool((pattern[3:, :3] > 0.05).all())
    _, ids, mask = figures.padded_batch()
    hf = transformers.BertModel.from_pretrained(minilm_path(), attn_implementation="eager").eval()
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, output_attentions=True).attentions[0][1, 0]
    assert_close(pattern, expected, name="MiniLM layer 0 head 0 pattern", atol=1e-6)


@pytest.mark.exercise("attention")
def test_a_key_bias_shifts_each_row_of_scores_by_one_constant(bert):
    """q . (k_s + b) = q . k_s + q . b: the same for every key s of a query's row, so the softmax
    (and everything after it) ignores the key bias, and its gradient is 0 (float64, exact to rounding)."""
    torch.manual_seed(0)
    cfg = bert.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16, attention_probs_dropout_prob=0.0)
    attn = bert.BertSelfAttention(cfg).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        attn.key.bias.normal_()
    _, with_bias = attn_scores_and_output(attn, x)
    bias = attn.key.bias.detach().clone()
    with torch.no_grad():
        attn.key.bias.zero_()
    scores0, out0 = attn_scores_and_output(attn, x)
    with torch.no_grad():
        attn.key.bias.copy_(bias)
    scores1, out1 = attn_scores_and_output(attn, x)
    shift = scores1 - scores0  # (B, nh, T, S): one constant per query row
    assert_close(shift, shift[..., :1].expand_as(shift), name="score shift across keys", atol=1e-12)
    q = (x @ attn.query.weight.T + attn.query.bias).view(2, 5, 2, 4).transpose(1, 2)  # (B, nh, T, hs)
    assert_close(shift[..., 0], (q * bias.view(2, 4)[None, :, None]).sum(-1) * attn.scale, name="shift = q . b_k * scale",
                 atol=1e-12)
    assert_close(out1, out0, name="output with and without the key bias", atol=1e-12)
    out1.pow(2).sum().backward()
    assert float(attn.key.bias.grad.abs().max()) < 1e-12, "the key bias's gradient should be 0"
    assert float(attn.query.bias.grad.abs().max()) > 1e-3, "the query bias does get a gradient"


def test_minilm_key_bias_gradients_are_rounding_noise():
    """The guide's fp32 numbers: on MiniLM's padded batch, the key biases' gradients are rounding
    noise (measured: at most 4e-6) while the query biases' largest entries are 6 to 32."""
    from mlab_tfs.assets import minilm_path
    from mlab_tfs.bert.solution import BertModel
    from mlab_tfs.tokenizers import WordPieceTokenizer

    batch = WordPieceTokenizer.from_pretrained(minilm_path())(
        ["a storm at sea drowned the ship and all its men", "calm"], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    model = BertModel.from_pretrained(minilm_path()).eval()
    model(ids, attention_mask=mask).last_hidden_state[mask.bool()].pow(2).sum().backward()
    key = [float(layer.attention.self.key.bias.grad.abs().max()) for layer in model.encoder.layer]
    query = [float(layer.attention.self.query.bias.grad.abs().max()) for layer in model.encoder.layer]
    assert max(key) < 1e-5, f"key-bias gradients {key} should be rounding noise"
    assert 5 < min(query) and max(query) < 40, f"query-bias gradients {query}: the guide says 6 to 32"


def attn_scores_and_output(attn, x):
    """(scores (B, nh, T, S) from hook_attn_scores, output (B, T, C)) of one forward."""
    seen = {}

    def keep(module, inputs, output):  # returns None: the scores flow on unchanged
        seen["scores"] = output.detach()

    handle = attn.hook_attn_scores.register_forward_hook(keep)
    try:
        out = attn(x)
    finally:
        handle.remove()
    return seen["scores"], out


def test_residual_stream_norms_in_the_guide():
    """The BERT guide's numbers: the mean token norm of the stream at each block's start (and after
    the last), post-LN MiniLM against the course's pre-LN GPT-2, on one sentence."""
    from mlab_tfs.assets import course_model_path, minilm_path
    from mlab_tfs.bert.solution import BertModel
    from mlab_tfs.gpt2.solution import GPT2LMHeadModel
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer

    text = "a storm at sea drowned the ship and all its men"
    bert = BertModel.from_pretrained(minilm_path()).eval()
    ids = WordPieceTokenizer.from_pretrained(minilm_path())([text], return_tensors="pt")["input_ids"]
    _, cache = bert.run_with_cache(ids)
    names = ["hook_full_embed"] + [f"blocks.{i}.hook_normalized_resid_post" for i in range(6)]
    norms = torch.stack([cache[n][0].norm(dim=-1).mean() for n in names])
    assert_close(norms, torch.tensor([9.2, 11.5, 11.4, 11.3, 12.2, 10.8, 9.1]), name="MiniLM stream norms", atol=0.05)

    gpt2 = GPT2LMHeadModel.from_pretrained(course_model_path()).eval()
    ids = torch.tensor([ByteLevelBPETokenizer.from_pretrained(course_model_path()).encode(text)])
    _, cache = gpt2.run_with_cache(ids)
    names = [f"blocks.{i}.hook_resid_pre" for i in range(6)] + ["blocks.5.hook_resid_post"]
    norms = torch.stack([cache[n][0].norm(dim=-1).mean() for n in names])
    assert_close(norms, torch.tensor([1.0, 9.3, 12.9, 15.5, 17.4, 19.7, 19.2]), name="course GPT-2 stream norms",
                 atol=0.05)


def test_minilm_has_rows_that_eps_1e_5_changes():
    """The guide's eps pitfall: MiniLM's embedding layer norm sees rows of std 0.065 at a real token
    ("at") and 0.046 at a [PAD] position, and eps 1e-5 everywhere instead of 1e-12 moves the last
    hidden state by ~1.1e-3 at real positions (a hundred times 1e-5)."""
    from mlab_tfs.assets import minilm_path
    from mlab_tfs.bert.solution import BertModel
    from mlab_tfs.gpt2.solution import LayerNorm
    from mlab_tfs.tokenizers import WordPieceTokenizer

    batch = WordPieceTokenizer.from_pretrained(minilm_path())(
        ["a storm at sea drowned the ship and all its men", "calm"], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    model = BertModel.from_pretrained(minilm_path()).eval()
    with torch.no_grad():
        out, cache = model.run_with_cache(ids, attention_mask=mask)
        smallest = min(float(v.min()) for k, v in cache.items() if k.endswith("hook_scale"))
        assert_close(torch.tensor(smallest), torch.tensor(0.046), name="smallest layer-norm scale", atol=5e-4)
        scale = cache["embed.ln.hook_scale"][..., 0]  # (B, T): sqrt(var + eps) of each row
        assert_close(scale.min(), torch.tensor(0.046), name="the smallest embedding-norm scale", atol=5e-4)
        assert not bool(mask.flatten()[scale.argmin()]), "the smallest row (0.046) is a [PAD] position"
        real = scale.masked_fill(~mask.bool(), float("inf"))
        assert_close(real.min(), torch.tensor(0.065), name="the smallest real-token scale", atol=5e-4)
        assert ids.flatten()[real.argmin()].item() == 2012  # "at" in MiniLM's vocabulary
        for module in model.modules():
            if isinstance(module, LayerNorm):
                module.eps = 1e-5
        moved = (model(ids, attention_mask=mask).last_hidden_state - out.last_hidden_state)[mask.bool()].abs().max()
    assert_close(moved, torch.tensor(1.1e-3), name="last_hidden_state moved by eps 1e-5", atol=1e-4)
