"""generate and pipeline("text-generation") on our GPT-2 through as_transformers: greedy and
beam search token for token equal to transformers' GPT2LMHeadModel.generate on the same
weights and to mlab_tfs.sampling's generate / beam_search, on left-padded batches; sampling
equal under the same seed; transformers' DynamicCache read and updated in place."""

from __future__ import annotations

import pytest
import torch
import transformers

from mlab_tfs import sampling
from mlab_tfs.bridge import as_transformers
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.plugin import load_impl


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bridge_generate")
    return {
        "base": tiny.gpt2_checkpoint(root / "base"),
        "untied": tiny.gpt2_checkpoint(root / "untied", "untied_erf_gelu_inverse_layer_scale", seed=3),
    }


@pytest.fixture(scope="module")
def vocab_folder(tmp_path_factory):
    """A tiny GPT-2 with GPT-2's real vocabulary (50257 ids), for its tokenizer."""
    return tiny.gpt2_checkpoint(tmp_path_factory.mktemp("bridge_vocab") / "vocab", vocab_size=50257,
                                bos_token_id=50256, eos_token_id=50256)


@pytest.fixture(params=["base", "untied"])
def models(request, folders, pytestconfig):
    """(our GPT2LMHeadModel, its adapter, transformers' GPT2LMHeadModel) on one checkpoint."""
    gpt2 = load_impl(pytestconfig, "gpt2")
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders[request.param])
    return model, as_transformers(model), tiny.hf_gpt2(folders[request.param])


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _prompts(vocab_size, lengths, seed):
    ids, mask, _ = tiny.left_padded_batch(vocab_size, lengths, seed=seed)
    return ids, mask


# eos given every time: transformers' generate reads None as the config's (0 in the tiny checkpoints).
@pytest.mark.parametrize("lengths, eos", [([5, 3, 7], 0), ([4, 4], 3), ([1, 6, 2, 6], 11)])
def test_greedy_equals_transformers_and_ours(models, lengths, eos):
    model, adapter, hf = models
    ids, mask = _prompts(model.config.vocab_size, lengths, seed=len(lengths))
    kwargs = dict(max_new_tokens=10, pad_token_id=0, eos_token_id=eos)
    out = adapter.generate(ids, attention_mask=mask, do_sample=False, **kwargs)
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kwargs)
    assert out.tolist() == expected.tolist()
    assert out.tolist() == sampling.generate(model, ids, mask, **kwargs).tolist()
    # Without the cache: every step reruns the whole sequence, the same tokens.
    uncached = adapter.generate(ids, attention_mask=mask, do_sample=False, use_cache=False, **kwargs)
    assert uncached.tolist() == out.tolist()


@pytest.mark.parametrize("num_beams, nrs, length_penalty, early_stopping",
                         [(3, 1, 1.0, False), (4, 2, 0.5, True), (2, 2, 2.0, "never")])
def test_beam_search_equals_transformers_and_ours(models, num_beams, nrs, length_penalty, early_stopping):
    model, adapter, hf = models
    ids, mask = _prompts(model.config.vocab_size, [6, 3], seed=num_beams)
    kwargs = dict(num_beams=num_beams, max_new_tokens=8, length_penalty=length_penalty, early_stopping=early_stopping,
                  eos_token_id=5, pad_token_id=0, num_return_sequences=nrs)
    out = adapter.generate(ids, attention_mask=mask, do_sample=False, output_scores=True, return_dict_in_generate=True,
                           **kwargs)
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, output_scores=True,
                           return_dict_in_generate=True, **kwargs)
    assert out.sequences.tolist() == expected.sequences.tolist()
    assert_close(out.sequences_scores, expected.sequences_scores, name="sequences_scores", atol=1e-5)
    mine = sampling.beam_search(model, ids, attention_mask=mask, **kwargs)
    assert mine.sequences.tolist() == out.sequences.tolist()
    assert_close(mine.sequences_scores, out.sequences_scores, name="beam_search scores", atol=1e-5)


# top_k is given every time: transformers' GenerationConfig defaults to top_k=50, ours to no top-k.
@pytest.mark.parametrize("seed, processors", [(0, dict(top_k=50)), (1, dict(top_k=5, temperature=0.7)),
                                              (2, dict(top_k=40, top_p=0.8, repetition_penalty=1.3))])
def test_sampling_equals_under_the_same_seed(models, seed, processors):
    """All three draw with torch.multinomial from the global generator, one (B, V) draw per
    step from the same processed probabilities: after torch.manual_seed(seed), the same tokens."""
    model, adapter, hf = models
    ids, mask = _prompts(model.config.vocab_size, [5, 2, 7], seed=seed)
    kwargs = dict(max_new_tokens=8, pad_token_id=0, eos_token_id=0, do_sample=True, **processors)
    runs = []
    for generate in (adapter.generate, hf.generate):
        torch.manual_seed(seed)
        runs.append(generate(ids, attention_mask=mask, **kwargs).tolist())
    torch.manual_seed(seed)
    runs.append(sampling.generate(model, ids, mask, **kwargs).tolist())
    assert runs[0] == runs[1] == runs[2]
    torch.manual_seed(seed + 100)
    assert adapter.generate(ids, attention_mask=mask, **kwargs).tolist() != runs[0]  # the draws matter


def test_a_dynamic_cache_is_read_and_updated_in_place(models):
    """A transformers DynamicCache given to the adapter gets the new keys and values, as
    transformers' model fills its own: the same cached tensors and next-step logits."""
    model, adapter, hf = models
    ids, mask = _prompts(model.config.vocab_size, [5, 3], seed=9)
    mine, theirs = transformers.DynamicCache(), transformers.DynamicCache()
    positions = sampling.position_ids_from_mask(mask)
    out = adapter(ids, attention_mask=mask, position_ids=positions, cache=mine, use_cache=True)
    expected = hf(ids, attention_mask=mask, position_ids=positions, cache=theirs, use_cache=True)
    assert out.cache is mine and mine.get_seq_length() == theirs.get_seq_length() == ids.shape[1]
    real = mask.bool()  # padding columns hold what each model makes of padding
    for a, b in zip(mine.layers, theirs.layers):  # (B, nh, S, hs)
        assert_close(a.keys.transpose(1, 2)[real], b.keys.transpose(1, 2)[real], name="cached keys")
        assert_close(a.values.transpose(1, 2)[real], b.values.transpose(1, 2)[real], name="cached values")
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    mask2 = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    step = adapter(nxt, attention_mask=mask2, position_ids=positions[:, -1:] + 1, past_key_values=mine)
    step_hf = hf(nxt, attention_mask=mask2, position_ids=positions[:, -1:] + 1, cache=theirs)
    assert mine.get_seq_length() == ids.shape[1] + 1
    assert_close(step.logits, step_hf.logits, name="logits after the cache")
    # generate with a cache the caller made: transformers' own rule, and the same tokens.
    made = transformers.DynamicCache()
    out = adapter.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, cache=made)
    assert out.tolist() == hf.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                       pad_token_id=0).tolist()
    assert made.get_seq_length() == out.shape[1] - 1


def test_another_transformers_cache_is_refused_by_name(models):
    model, adapter, _ = models
    cache = transformers.StaticCache(config=adapter.config, max_cache_len=16)
    with pytest.raises(TypeError, match=r"cache: .*only a DynamicCache.*got StaticCache"):
        adapter(torch.tensor([[1, 2]]), cache=cache)
    with pytest.raises(ValueError, match="cache or past_key_values"):
        adapter(torch.tensor([[1, 2]]), cache=transformers.DynamicCache(), past_key_values=transformers.DynamicCache())


def test_text_generation_pipeline_equals_transformers(vocab_folder, pytestconfig):
    """pipeline("text-generation") with GPT-2's own tokenizer files: the same text from our
    model through the bridge as from transformers' model, greedy, one prompt and a batch."""
    from mlab_tfs import assets

    gpt2 = load_impl(pytestconfig, "gpt2")
    files = assets.gpt2_vocab_dir()
    tokenizer = transformers.GPT2TokenizerFast(vocab=str(files / "encoder.json"), merges=str(files / "vocab.bpe"))
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    adapter = as_transformers(gpt2.GPT2LMHeadModel.from_pretrained(vocab_folder))
    hf = tiny.hf_gpt2(vocab_folder)
    texts = ["ROMEO: hello", "To be, or not to be, that is", "A"]
    results = []
    for model in (adapter, hf):
        pipe = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
        one = pipe(texts[0], max_new_tokens=8, do_sample=False)
        batch = pipe(texts, max_new_tokens=8, do_sample=False, batch_size=3)
        results.append((one, batch))
    assert results[0] == results[1]
    generated = results[0][0][0]["generated_text"]
    assert generated.startswith(texts[0])
    assert len(tokenizer(generated).input_ids) == len(tokenizer(texts[0]).input_ids) + 8


def test_generate_from_inputs_embeds_equals_transformers(models):
    """generate(inputs_embeds=...) runs the prompt from embeddings, then tokens, as transformers
    does (the new tokens only are returned). Needs our forward to take inputs_embeds."""
    import inspect

    model, adapter, hf = models
    if "inputs_embeds" not in inspect.signature(type(model).forward).parameters:
        pytest.skip("this GPT2LMHeadModel.forward takes no inputs_embeds")
    ids, mask = _prompts(model.config.vocab_size, [5, 3], seed=13)
    embeds = hf.transformer.wte(ids)  # (B, T, C): the same table as ours
    assert torch.equal(adapter(inputs_embeds=embeds, attention_mask=mask).logits,
                       adapter(ids, attention_mask=mask).logits)
    kwargs = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=0)
    out = adapter.generate(inputs_embeds=embeds, **kwargs)
    assert out.tolist() == hf.generate(inputs_embeds=embeds, **kwargs).tolist()
    assert out.tolist() == adapter.generate(ids, **kwargs)[:, ids.shape[1]:].tolist()


def test_stop_strings_and_logits_processors_equal_transformers(vocab_folder, pytestconfig):
    """generate(stop_strings=..., tokenizer=...) hands the tokenizer on to forward, as it does
    every keyword of its own (transformers' models take it in **kwargs): the adapter drops it
    and stops where transformers' model stops. min_new_tokens, no_repeat_ngram_size,
    bad_words_ids and repetition_penalty give the same tokens too."""
    from mlab_tfs import assets

    gpt2 = load_impl(pytestconfig, "gpt2")
    files = assets.gpt2_vocab_dir()
    tokenizer = transformers.GPT2TokenizerFast(vocab=str(files / "encoder.json"), merges=str(files / "vocab.bpe"))
    adapter = as_transformers(gpt2.GPT2LMHeadModel.from_pretrained(vocab_folder))
    hf = tiny.hf_gpt2(vocab_folder)
    ids = torch.tensor([tokenizer("ROMEO: hello").input_ids])
    free = hf.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=50256, eos_token_id=50256)
    stop = tokenizer.decode(free[0, ids.shape[1] + 3:ids.shape[1] + 4])  # the 4th new token's text
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=50256, eos_token_id=50256)
    ours = adapter.generate(ids, stop_strings=[stop], tokenizer=tokenizer, **kwargs)
    assert ours.tolist() == hf.generate(ids, stop_strings=[stop], tokenizer=tokenizer, **kwargs).tolist()
    assert ours.shape[1] <= ids.shape[1] + 4 < free.shape[1]  # it did stop early
    first = int(free[0, ids.shape[1]])
    for extra in (dict(min_new_tokens=5, eos_token_id=int(free[0, ids.shape[1] + 2])),
                  dict(no_repeat_ngram_size=2), dict(bad_words_ids=[[first]]), dict(repetition_penalty=1.5)):
        options = kwargs | extra
        out = adapter.generate(ids, **options)
        assert out.tolist() == hf.generate(ids, **options).tolist(), extra
    assert int(adapter.generate(ids, bad_words_ids=[[first]], **kwargs)[0, ids.shape[1]]) != first
