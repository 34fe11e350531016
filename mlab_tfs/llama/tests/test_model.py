"""The Llama / Qwen3 model against transformers' LlamaForCausalLM / Qwen3ForCausalLM, fp32 on
CPU: logits and loss within 1e-5, every parameter's gradient within 1e-4 relative, on both
attention paths, with and without left padding."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.testing.compare import assert_close, assert_grads_close, grads
from mlab_tfs.testing.tiny import left_padded_batch

from .helpers import GQA, LLAMA3, NAMES, QWEN3, TIED, hf_grads_as_ours, pair, positions, random_ids

PATHS = ("eager", "sdpa")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_logits_and_loss_equal_transformers(llama, checkpoints, hf_models, name, path):
    ours, hf = pair(llama, checkpoints, hf_models, name, path)
    ids = random_ids(ours.config.vocab_size, (2, 11))
    with torch.no_grad():
        expected, actual = hf(ids, labels=ids), ours(ids, labels=ids)
    assert_close(actual.logits, expected.logits, name=f"{name} logits ({path})", atol=1e-5)
    assert_close(actual.loss, expected.loss, name=f"{name} loss ({path})", atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_left_padded_logits_equal_transformers(llama, checkpoints, hf_models, name, path):
    """Left padding with explicit position_ids: every real position's logits as transformers'."""
    ours, hf = pair(llama, checkpoints, hf_models, name, path)
    ids, mask, pos = left_padded_batch(ours.config.vocab_size, [9, 4, 1], seed=3)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=pos).logits
        actual = ours(ids, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    assert_close(actual[real], expected[real], name=f"{name} padded logits ({path})", atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_every_gradient_equals_transformers(llama, checkpoints, hf_sdpa_models, name, path):
    """With left padding: transformers' eager path lets the last padding query see every key
    (a uniform pattern), and its logits predict the first real token; its sdpa path, as ours,
    gives that query a zero attention output. So the reference is transformers' sdpa."""
    ours, hf = pair(llama, checkpoints, hf_sdpa_models, name, path)
    ids, mask, pos = left_padded_batch(ours.config.vocab_size, [8, 5], seed=1)
    labels = ids.masked_fill(mask == 0, -100)
    hf.zero_grad()
    hf(ids, attention_mask=mask, position_ids=pos, labels=labels).loss.backward()
    ours(ids, attention_mask=mask, position_ids=pos, labels=labels).loss.backward()
    expected = hf_grads_as_ours(hf, ours.config.tie_word_embeddings)
    assert_grads_close(grads(ours), expected, rtol=1e-4)
    hf.zero_grad()


def test_configs_cover_the_family(checkpoints):
    """What the tiny checkpoints switch on: GQA, head_dim != hidden/heads, llama3 rope, biases,
    tied and untied heads, QK-norm."""
    from mlab_tfs.checkpoints import read_config

    c = {n: read_config(checkpoints[n]) for n in NAMES}
    assert c[GQA]["num_key_value_heads"] < c[GQA]["num_attention_heads"]
    assert c[LLAMA3]["head_dim"] != c[LLAMA3]["hidden_size"] // c[LLAMA3]["num_attention_heads"]
    assert c[LLAMA3]["rope_parameters"]["rope_type"] == "llama3"
    assert c[TIED]["tie_word_embeddings"] and c[TIED]["attention_bias"] and c[TIED]["mlp_bias"]
    assert not c[GQA]["tie_word_embeddings"]
    assert c[QWEN3]["model_type"] == "qwen3" and c[QWEN3]["head_dim"] * 4 != c[QWEN3]["hidden_size"]


def test_llama3_frequencies_equal_transformers(llama, checkpoints, hf_models):
    """rope_frequencies on the llama3 config: all three bands occur (kept, smoothed, slowed by
    factor 8) and every frequency equals transformers' (exactly: same float32 operations)."""
    ours, hf = pair(llama, checkpoints, hf_models, LLAMA3)
    expected = hf.model.rotary_emb.inv_freq
    inv_freq = llama.rope_frequencies(ours.config)
    assert torch.equal(inv_freq, expected)
    default = 1.0 / (500000.0 ** (torch.arange(0, 16, 2).float() / 16))
    ratio = default / inv_freq
    assert ratio[0] == 1 and ratio[-1] == 8 and ((ratio > 1) & (ratio < 8)).any(), ratio


def test_loss_with_num_items_in_batch(llama, checkpoints, hf_models):
    ours, hf = pair(llama, checkpoints, hf_models, GQA)
    ids = random_ids(ours.config.vocab_size, (2, 11))
    with torch.no_grad():
        expected = hf(ids, labels=ids, num_items_in_batch=7).loss
        actual = ours(ids, labels=ids, num_items_in_batch=7).loss
    assert_close(actual, expected, name="loss with num_items_in_batch=7", atol=1e-5)


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_hidden_states_and_attentions_equal_transformers(llama, checkpoints, hf_models, name):
    ours, hf = pair(llama, checkpoints, hf_models, name)
    ids, mask, pos = left_padded_batch(ours.config.vocab_size, [7, 7], seed=2)
    with torch.no_grad():
        e = hf(ids, output_hidden_states=True, output_attentions=True)
        a = ours(ids, output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == len(e.hidden_states) == ours.config.num_hidden_layers + 1
    for i, (x, y) in enumerate(zip(a.hidden_states, e.hidden_states)):
        assert_close(x, y, name=f"hidden_states[{i}]", atol=1e-5)
    for i, (x, y) in enumerate(zip(a.attentions, e.attentions)):
        assert_close(x, y, name=f"attentions[{i}]", atol=1e-6)


def test_fresh_model_initialisation(llama):
    """transformers' init: N(0, initializer_range) Linear and embedding weights, RMSNorm ones,
    the padding row zero."""
    cfg = llama.LlamaConfig(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, initializer_range=0.05, pad_token_id=3)
    torch.manual_seed(0)
    model = llama.LlamaForCausalLM(cfg)
    p = dict(model.named_parameters())
    # Sample std of >= 32k draws: within 2% of the target.
    for n in ("model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.weight", "lm_head.weight"):
        assert abs(float(p[n].detach().std()) / 0.05 - 1) < 0.02, n
    assert torch.equal(p["model.layers.1.input_layernorm.weight"], torch.ones(128))
    assert torch.equal(p["model.embed_tokens.weight"][3], torch.zeros(128))
    assert p["model.layers.0.self_attn.k_proj.weight"].shape == (2 * 32, 128)
    assert model.lm_head.weight is not model.model.embed_tokens.weight


def test_padding_row_gets_no_gradient(llama, checkpoints, hf_models):
    """pad_token_id's embedding row gets no gradient, as transformers' nn.Embedding(padding_idx)."""
    ours, _ = pair(llama, checkpoints, hf_models, GQA)
    assert ours.config.pad_token_id == 0
    ids = torch.tensor([[0, 0, 5, 6, 0, 7]])
    ours(ids, labels=ids).loss.backward()
    g = ours.model.embed_tokens.weight.grad
    assert torch.equal(g[0], torch.zeros_like(g[0])) and g[5].abs().sum() > 0


# ----------------------------------------------------------------------------- bad input


BAD_INPUTS = {
    "id == vocab_size": (lambda: dict(input_ids=torch.tensor([[1, 97]])), ValueError, "input_ids"),
    "negative id": (lambda: dict(input_ids=torch.tensor([[1, -1]])), ValueError, "input_ids"),
    "float ids": (lambda: dict(input_ids=torch.tensor([[1.0, 2.0]])), ValueError, "input_ids"),
    "1-d ids": (lambda: dict(input_ids=torch.tensor([1, 2])), ValueError, "input_ids"),
    "mask of another length": (lambda: dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3)),
                               ValueError, "attention_mask"),
    "mask of 2s": (lambda: dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.tensor([[1, 2]])),
                   ValueError, "attention_mask"),
    "negative position": (lambda: dict(input_ids=torch.tensor([[1, 2]]), position_ids=torch.tensor([[0, -1]])),
                          ValueError, "position_ids"),
    "positions of another shape": (lambda: dict(input_ids=torch.tensor([[1, 2]]),
                                                position_ids=torch.tensor([[0, 1, 2]])), ValueError, "position_ids"),
    "labels outside vocab": (lambda: dict(input_ids=torch.tensor([[1, 2]]), labels=torch.tensor([[1, 97]])),
                             ValueError, "labels"),
    "cache with n_head heads, not n_kv": (
        lambda: dict(input_ids=torch.tensor([[1]]),
                     past_key_values=tuple((torch.zeros(1, 4, 2, 8), torch.zeros(1, 4, 2, 8)) for _ in range(2))),
        ValueError, "past_key_values"),
    "cache of another depth": (
        lambda: dict(input_ids=torch.tensor([[1]]),
                     past_key_values=((torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 2, 8)),)),
        ValueError, "past_key_values"),
    "cache not a cache": (lambda: dict(input_ids=torch.tensor([[1]]), past_key_values="cache"), TypeError,
                          "past_key_values"),
    # A flag that is not a bool was read for its truth value: "yes" ran with the cache on, unasked.
    "use_cache not a bool": (lambda: dict(input_ids=torch.tensor([[1]]), use_cache="yes"), TypeError, "use_cache"),
    "output_attentions not a bool": (lambda: dict(input_ids=torch.tensor([[1]]), output_attentions=1), TypeError,
                                     "output_attentions"),
    "output_hidden_states not a bool": (lambda: dict(input_ids=torch.tensor([[1]]), output_hidden_states="no"),
                                        TypeError, "output_hidden_states"),
}


@pytest.mark.parametrize("argument", ["input_ids", "attention_mask", "position_ids", "labels"])
def test_a_tensor_on_another_device_names_it(llama, checkpoints, hf_models, argument):
    """A tensor elsewhere than the model was a bare RuntimeError from inside a matmul (or a
    .item() on a meta tensor): a ValueError naming the argument and both devices. The meta
    device stands in for a GPU here."""
    ours, _ = pair(llama, checkpoints, hf_models, GQA)
    ids = random_ids(ours.config.vocab_size, (2, 4))
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(4)[None].repeat(2, 1),
                  labels=ids)
    kwargs[argument] = kwargs[argument].to("meta")
    with pytest.raises(ValueError, match=rf"{argument} is on meta but the model is on cpu"):
        ours(**kwargs)


def test_flags_of_none_mean_false_as_in_transformers(llama, checkpoints, hf_models):
    ours, hf = pair(llama, checkpoints, hf_models, GQA)
    ids = random_ids(ours.config.vocab_size, (2, 11))
    with torch.no_grad():
        out = ours(ids, use_cache=None, output_attentions=None, output_hidden_states=None)
    assert out.past_key_values is None and out.attentions is None and out.hidden_states is None
    assert_close(out.logits, hf(ids).logits, name="logits", atol=1e-5)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_names_the_argument(llama, checkpoints, hf_models, case):
    ours, _ = pair(llama, checkpoints, hf_models, GQA)
    make, error, argument = BAD_INPUTS[case]
    with pytest.raises(error, match=argument):
        ours(**make())


def test_positions_beyond_max_position_embeddings_as_transformers(llama, checkpoints, hf_models):
    """Rotary positions have no table: transformers runs past max_position_embeddings (64), and so do we."""
    ours, hf = pair(llama, checkpoints, hf_models, GQA)
    ids = random_ids(ours.config.vocab_size, (1, 70))
    pos = torch.arange(1000, 1070)[None]
    with torch.no_grad():
        assert_close(ours(ids, position_ids=pos).logits, hf(ids, position_ids=pos).logits,
                     name="logits at positions 1000..1069", atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_half_precision_logits_equal_transformers_bit_for_bit(llama, checkpoints, name, dtype, path):
    """from_pretrained(dtype=...) and model.to(dtype) against transformers' model loaded in that
    dtype: the same operations in the same order give the same bits (a SiLU computed as
    x * sigmoid(x) rounded twice and put the logits 0.05 off in bfloat16)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(checkpoints[name], dtype=dtype, attn_implementation=path).eval()
    ids, mask, pos = left_padded_batch(hf.config.vocab_size, [11, 6], seed=3)
    for model in (llama.LlamaForCausalLM.from_pretrained(checkpoints[name], dtype=dtype),
                  llama.LlamaForCausalLM.from_pretrained(checkpoints[name]).to(dtype)):
        model.eval().set_attn_implementation(path)
        with torch.no_grad():
            actual = model(ids, attention_mask=mask, position_ids=pos).logits
            expected = hf(ids, attention_mask=mask, position_ids=pos).logits
        real = mask.bool()
        assert actual.dtype == dtype
        assert torch.equal(actual[real], expected[real]), (
            f"{name} {dtype} ({path}): max difference {(actual[real].float() - expected[real].float()).abs().max()}")
