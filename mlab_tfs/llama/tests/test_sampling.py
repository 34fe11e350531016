"""The course's samplers (mlab_tfs.sampling, written against GPT-2) run on the Llama family
unchanged: greedy and seeded sampling equal transformers' generate on the same weights, beam
search equals transformers' beam search, two contexts and suffix scoring give what they give on
transformers' model, and generate_fast (static cache) equals generate."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs import sampling
from mlab_tfs.sampling.fast import generate_fast
from mlab_tfs.testing.compare import assert_close

from .helpers import GQA, LLAMA3, NAMES, QWEN3, QWEN3_TIED, TIED, pair


def _prompts(V, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    return sampling.left_pad([torch.randint(1, V, (n,), generator=g).tolist() for n in lengths], pad_token_id=0)


def _equal(actual, expected, what):
    assert actual.shape == expected.shape and torch.equal(actual, expected), (
        f"{what}: token ids differ\n got {actual.tolist()}\n expected {expected.tolist()}")


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generate_equals_transformers(llama, checkpoints, hf_models, name):
    model, hf = pair(llama, checkpoints, hf_models, name)
    ids, mask = _prompts(model.config.vocab_size, [6, 2, 5], seed=1)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0)
    # transformers' generate stops at its generation config's eos (config.eos_token_id); ours is told.
    eos = model.config.eos_token_id
    _equal(sampling.generate(model, ids, mask, max_new_tokens=12, pad_token_id=0, eos_token_id=eos), expected,
           f"{name}: greedy generate")


def test_greedy_generate_with_eos_equals_transformers(llama, checkpoints, hf_models):
    model, hf = pair(llama, checkpoints, hf_models, QWEN3)
    ids, mask = _prompts(model.config.vocab_size, [5, 3, 7], seed=2)
    first = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    eos = int(first[0, ids.shape[1] + 3])  # a token row 0 makes at its 4th step
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0,
                           eos_token_id=eos)
    _equal(sampling.generate(model, ids, mask, max_new_tokens=10, pad_token_id=0, eos_token_id=eos), expected,
           f"greedy generate with eos={eos}")


@pytest.mark.parametrize("name", [GQA, QWEN3_TIED])
def test_sampling_equals_transformers_under_the_same_seed(llama, checkpoints, hf_models, name):
    model, hf = pair(llama, checkpoints, hf_models, name)
    ids, mask = _prompts(model.config.vocab_size, [4, 6], seed=3)
    kw = dict(temperature=1.3, top_k=10, top_p=0.9)
    torch.manual_seed(5)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=True, pad_token_id=0, **kw)
    torch.manual_seed(5)
    _equal(sampling.generate(model, ids, mask, max_new_tokens=10, do_sample=True, pad_token_id=0,
                             eos_token_id=model.config.eos_token_id, **kw), expected,
           f"{name}: generate(do_sample=True, {kw})")


@pytest.mark.parametrize("name", [GQA, LLAMA3, QWEN3])
def test_beam_search_equals_transformers(llama, checkpoints, hf_models, name):
    model, hf = pair(llama, checkpoints, hf_models, name)
    ids, mask = _prompts(model.config.vocab_size, [5, 3], seed=4)
    out = hf.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=6, do_sample=False, pad_token_id=0,
                      num_return_sequences=2, output_scores=True, return_dict_in_generate=True)
    ours = sampling.beam_search(model, ids, num_beams=3, max_new_tokens=6, attention_mask=mask, pad_token_id=0,
                                num_return_sequences=2, eos_token_id=model.config.eos_token_id)
    _equal(ours.sequences, out.sequences, f"{name}: beam search")
    assert_close(ours.sequences_scores, out.sequences_scores, name="beam scores", atol=1e-5)


def test_two_contexts_equal_the_same_sampler_on_transformers(llama, checkpoints, hf_models):
    """sample_two_contexts runs the model twice per step with two caches: on our Llama it gives
    the tokens it gives on transformers' model of the same weights."""
    model, hf = pair(llama, checkpoints, hf_models, GQA)
    a, ma = _prompts(model.config.vocab_size, [6, 3], seed=5)
    b, mb = _prompts(model.config.vocab_size, [2, 4], seed=6)
    for mode in ("contrastive", "product"):
        kw = dict(mode=mode, gamma=0.7, max_new_tokens=8, pad_token_id=0)
        _equal(sampling.sample_two_contexts(model, a, b, ma, mb, generator=torch.Generator().manual_seed(1), **kw),
               sampling.sample_two_contexts(hf, a, b, ma, mb, generator=torch.Generator().manual_seed(1), **kw),
               f"two contexts ({mode})")


@pytest.mark.parametrize("name", [TIED, QWEN3])
def test_suffix_scores_equal_the_naive_loop_and_transformers(llama, checkpoints, hf_models, name):
    model, hf = pair(llama, checkpoints, hf_models, name)
    prompt, suffix = [3, 9, 4, 1], [7, 2]
    completions = [[5], [], [8, 8, 1], [2, 6]]
    with torch.no_grad():
        fast = sampling.score_suffix(model, prompt, completions, suffix)
        naive = sampling.score_suffix_naive(model, prompt, completions, suffix)
        theirs = sampling.score_suffix_naive(hf, prompt, completions, suffix)
    assert_close(fast, naive, name="score_suffix vs the naive loop", atol=1e-5)
    assert_close(fast, theirs, name="score_suffix vs transformers' model", atol=1e-5)


@pytest.mark.parametrize("name", [GQA, LLAMA3, QWEN3])
def test_generate_fast_equals_generate(llama, checkpoints, hf_models, name):
    """The static-cache path (KVCache.for_model with num_key_value_heads heads), eager (no compile) on CPU."""
    model, _ = pair(llama, checkpoints, hf_models, name)
    ids, mask = _prompts(model.config.vocab_size, [6, 2, 5, 4], seed=7)
    expected = sampling.generate(model, ids, mask, max_new_tokens=10, pad_token_id=0)
    _equal(generate_fast(model, ids, mask, max_new_tokens=10, pad_token_id=0, compile=False), expected,
           f"{name}: generate_fast, greedy")
    # The decode step's other paths: sdpa (the repeated heads) and the linear layers as sums.
    for variant in (dict(decode_attention=False), dict(linear_as_sums=4)):
        _equal(generate_fast(model, ids, mask, max_new_tokens=10, pad_token_id=0, compile=False, **variant),
               expected, f"{name}: generate_fast, greedy, {variant}")
    # Sampling from top_k=1 draws the argmax whatever the noise: the greedy tokens again.
    got = generate_fast(model, ids, mask, max_new_tokens=10, pad_token_id=0, do_sample=True, top_k=1,
                        compile=False, generator=torch.Generator().manual_seed(3))
    _equal(got, expected, f"{name}: generate_fast, sampling with top_k=1")


def test_generation_runs_past_max_position_embeddings(llama, checkpoints, hf_models):
    """Rotary positions have no table: generate goes past max_position_embeddings (64) as
    transformers' generate does, and the static path sizes its cache to the request."""
    model, hf = pair(llama, checkpoints, hf_models, GQA)
    ids = torch.randint(1, model.config.vocab_size, (1, 60), generator=torch.Generator().manual_seed(8))
    expected = hf.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    eos = model.config.eos_token_id
    _equal(sampling.generate(model, ids, max_new_tokens=8, pad_token_id=0, eos_token_id=eos), expected,
           "generate to 68 tokens")
    _equal(generate_fast(model, ids, max_new_tokens=8, pad_token_id=0, eos_token_id=eos, compile=False), expected,
           "generate_fast to 68 tokens")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled CUDA-graph step needs a GPU")
def test_compiled_generate_fast_on_cuda_equals_generate(llama, checkpoints):
    model = llama.LlamaForCausalLM.from_pretrained(checkpoints[GQA]).eval().cuda()
    ids, mask = _prompts(model.config.vocab_size, [6, 2], seed=9)
    ids, mask = ids.cuda(), mask.cuda()
    expected = sampling.generate(model, ids, mask, max_new_tokens=10, pad_token_id=0)
    _equal(generate_fast(model, ids, mask, max_new_tokens=10, pad_token_id=0), expected, "compiled generate_fast")


def test_compiled_generate_fast_on_more_models_than_the_recompile_limit(llama, tmp_path):
    """torch.compile keeps a code object's compiled graphs up to recompile_limit (8), and with
    fullgraph=True one more is a hard error: every model's step shared one code object, so the
    9th model of another shape in a process failed. The limit is set to 1 here, and 3 models of
    3 vocabulary sizes each compile their own step (the "eager" backend: no compiler on CPU)."""
    from mlab_tfs.testing import tiny

    ids = torch.randint(1, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch._dynamo.config.patch(recompile_limit=1):
        for i in range(3):
            folder = tiny.llama_checkpoint(tmp_path / str(i), GQA, seed=i, vocab_size=60 + i)
            model = llama.LlamaForCausalLM.from_pretrained(folder).eval()
            expected = sampling.generate(model, ids, max_new_tokens=3)
            _equal(generate_fast(model, ids, max_new_tokens=3, compile_options={"backend": "eager"}), expected,
                   f"compiled generate_fast, model {i}")
