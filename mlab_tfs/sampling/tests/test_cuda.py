"""Every sampler on a CUDA model: lists of ids are placed on the model's device, CPU tensors
and CPU generators are refused by name, and the results equal the CPU results.

Skipped without CUDA; run on a GPU machine with ``pytest mlab_tfs/sampling/tests/test_cuda.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from mlab_tfs.testing.compare import assert_close

from .helpers import padded_batch, prompts
from .test_generate import assert_tokens_equal

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

VOCAB = 97
CUDA = torch.device("cuda:0")


@pytest.fixture
def pair(model_pairs, kind):
    """(the base checkpoint on the CPU, a copy of it on the GPU), ours and transformers'."""
    cpu = model_pairs["base"][kind]
    return cpu, copy.deepcopy(cpu).to(CUDA)


@pytest.mark.exercise("kv_cache_loop")
def test_generate_takes_lists_and_refuses_cpu_tensors(sampling, pair):
    cpu, gpu = pair
    ids, mask = padded_batch(VOCAB, [5, 3], seed=1)
    expected = sampling.generate(cpu, ids, mask, max_new_tokens=6, pad_token_id=0)
    out = sampling.generate(gpu, ids.tolist(), mask.tolist(), max_new_tokens=6, pad_token_id=0)
    assert out.device.type == "cuda"
    assert_tokens_equal(out.cpu(), expected, "generate on CUDA from lists")
    assert_tokens_equal(sampling.generate(gpu, ids.to(CUDA), mask.to(CUDA), max_new_tokens=6, pad_token_id=0).cpu(),
                        expected, "generate on CUDA from CUDA tensors")
    with pytest.raises(ValueError, match="input_ids is on cpu but the model is on cuda:0"):
        sampling.generate(gpu, ids, mask.to(CUDA), max_new_tokens=2, pad_token_id=0)
    with pytest.raises(ValueError, match="attention_mask is on cpu but the model is on cuda:0"):
        sampling.generate(gpu, ids.to(CUDA), mask, max_new_tokens=2, pad_token_id=0)
    with pytest.raises(ValueError, match="generator is on cpu but the model is on cuda:0"):
        sampling.generate(gpu, ids.to(CUDA), mask.to(CUDA), max_new_tokens=2, pad_token_id=0, do_sample=True,
                          generator=torch.Generator().manual_seed(0))
    g = torch.Generator(device=CUDA).manual_seed(0)
    drawn = sampling.generate(gpu, ids.tolist(), mask.tolist(), max_new_tokens=6, pad_token_id=0, do_sample=True,
                              top_k=5, generator=g)
    assert drawn.shape == (2, ids.shape[1] + 6) and drawn.device.type == "cuda"
    assert_tokens_equal(drawn[:, : ids.shape[1]].cpu(), ids, "the prompt part of a sampled output")


@pytest.mark.exercise("batching")
def test_left_pad_on_cuda(sampling):
    ids, mask = sampling.left_pad([[5, 6, 7], [8]], 0, device=CUDA)
    assert ids.device.type == mask.device.type == "cuda"
    again, _ = sampling.left_pad([torch.tensor([5, 6, 7], device=CUDA), torch.tensor([8], device=CUDA)], 0)
    assert again.device.type == "cuda" and torch.equal(again, ids)
    with pytest.raises(ValueError, match=r"sequences\[1\] is on cpu"):
        sampling.left_pad([torch.tensor([5], device=CUDA), torch.tensor([8])], 0)


@pytest.mark.exercise("greedy")
def test_greedy_decode_on_cuda(sampling, pair):
    cpu, gpu = pair
    ids = torch.stack(prompts(VOCAB, [5, 5], seed=2))
    expected = sampling.greedy_decode(cpu, ids, 6)
    assert_tokens_equal(sampling.greedy_decode(gpu, ids.tolist(), 6).cpu(), expected, "greedy_decode on CUDA (lists)")
    with pytest.raises(ValueError, match="input_ids is on cpu but the model is on cuda:0"):
        sampling.greedy_decode(gpu, ids, 6)


@pytest.mark.exercise("beam_search")
def test_beam_search_on_cuda(sampling, pair):
    cpu, gpu = pair
    ids, mask = padded_batch(VOCAB, [4, 6], seed=21)
    expected = sampling.beam_search(cpu, ids, 3, 8, 1.0, False, 70, attention_mask=mask, pad_token_id=0,
                                    num_return_sequences=3)
    out = sampling.beam_search(gpu, ids.tolist(), 3, 8, 1.0, False, 70, attention_mask=mask.tolist(), pad_token_id=0,
                               num_return_sequences=3)
    assert_tokens_equal(out.sequences.cpu(), expected.sequences, "beam_search on CUDA (lists)")
    assert_close(out.sequences_scores.cpu(), expected.sequences_scores, name="beam scores on CUDA", atol=1e-5)
    with pytest.raises(ValueError, match="input_ids is on cpu"):
        sampling.beam_search(gpu, ids, 3, 8, attention_mask=mask.to(CUDA), pad_token_id=0)


@pytest.mark.exercise("two_contexts")
def test_sample_two_contexts_on_cuda(sampling, pair):
    cpu, gpu = pair
    ids_a, mask_a = padded_batch(VOCAB, [5, 3], seed=30)
    ids_b, mask_b = padded_batch(VOCAB, [8, 6], seed=31)
    kw = dict(mode="contrastive", gamma=1.5, max_new_tokens=6, do_sample=False, pad_token_id=0)
    expected = sampling.sample_two_contexts(cpu, ids_a, ids_b, mask_a, mask_b, **kw)
    out = sampling.sample_two_contexts(gpu, ids_a.tolist(), ids_b.tolist(), mask_a.tolist(), mask_b.tolist(), **kw)
    assert_tokens_equal(out.cpu(), expected, "sample_two_contexts on CUDA (lists)")
    with pytest.raises(ValueError, match="input_ids_b is on cpu"):
        sampling.sample_two_contexts(gpu, ids_a.to(CUDA), ids_b, mask_a.to(CUDA), mask_b.to(CUDA), **kw)


@pytest.mark.exercise("suffix_scoring")
def test_suffix_scoring_and_filtered_sample_on_cuda(sampling, pair):
    cpu, gpu = pair
    prompt = prompts(VOCAB, [6], seed=40)[0].tolist()
    completions = [c.tolist() for c in prompts(VOCAB, [3, 0, 5], seed=41)]
    suffix = [7, 8, 9]
    expected = sampling.score_suffix(cpu, prompt, completions, suffix)
    for fn in (sampling.score_suffix, sampling.score_suffix_naive):
        got = fn(gpu, prompt, completions, suffix)
        assert got.device.type == "cuda"
        assert_close(got.cpu(), expected, name=f"{fn.__name__} on CUDA (lists)", atol=1e-5)
    with pytest.raises(ValueError, match="prompt_ids is on cpu"):
        sampling.score_suffix(gpu, torch.tensor(prompt), completions, suffix)
    suffixes = [suffix, [4], [6, 2, 9, 1]]
    got = sampling.score_suffixes(gpu, prompt, completions, suffixes)
    assert got.device.type == "cuda" and got.shape == (3, 3)
    assert_close(got.cpu(), torch.stack([sampling.score_suffix_naive(cpu, prompt, completions, s) for s in suffixes]),
                 name="score_suffixes on CUDA (lists)", atol=1e-5)
    with pytest.raises(ValueError, match=r"suffixes\[1\] is on cpu"):
        sampling.score_suffixes(gpu, prompt, completions, [suffix, torch.tensor([4])])
    result = sampling.filtered_sample(gpu, prompt, 4, [7, 8, 9], [7, 8, 10], max_new_tokens=4,
                                      generator=torch.Generator(device=CUDA).manual_seed(0))
    again = sampling.score_suffix(cpu, prompt, result.completions, [7, 8, 9]) - sampling.score_suffix(
        cpu, prompt, result.completions, [7, 8, 10])
    assert_close(result.scores.cpu(), again, name="filtered_sample scores on CUDA", atol=1e-5)
    with pytest.raises(ValueError, match="generator is on cpu"):
        sampling.filtered_sample(gpu, prompt, 2, [7], [8], max_new_tokens=2, generator=torch.Generator().manual_seed(0))


@pytest.mark.exercise("penalties")
def test_processors_place_lists_on_the_logits_device(sampling):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, VOCAB, generator=g)
    history = torch.randint(0, VOCAB, (2, 9), generator=g)
    kw = dict(repetition_penalty=1.4, frequency_penalty=0.3, presence_penalty=0.2, no_repeat_ngram_size=2, top_k=20,
              top_p=0.9, min_p=0.05, temperature=0.8)
    expected = sampling.process_logits(logits, history, 4, **kw)
    got = sampling.process_logits(logits.to(CUDA), history.tolist(), 4, **kw)
    assert_close(got.cpu(), expected, name="process_logits on CUDA with a list history", atol=1e-5)
    with pytest.raises(ValueError, match="history is on cpu but logits is on cuda:0"):
        sampling.process_logits(logits.to(CUDA), history, 4, **kw)
    with pytest.raises(ValueError, match="input_ids is on cpu but logits is on cuda:0"):
        sampling.apply_repetition_penalty(logits.to(CUDA), history, 1.3)
    with pytest.raises(ValueError, match="generator is on cpu but logits is on cuda:0"):
        sampling.sample_token(logits.to(CUDA), torch.Generator().manual_seed(0))


@pytest.mark.solution_only
def test_generate_fast_on_cuda(model_pairs):
    from mlab_tfs.sampling import solution
    from mlab_tfs.sampling.fast import generate_fast

    cpu = model_pairs["base"]["ours"]
    gpu = copy.deepcopy(cpu).to(CUDA)
    ids, mask = padded_batch(VOCAB, [5, 3, 4], seed=17)
    expected = solution.generate(cpu, ids, mask, max_new_tokens=8, pad_token_id=0)
    got = generate_fast(gpu, ids.tolist(), mask.tolist(), max_new_tokens=8, pad_token_id=0, compile=False)
    assert_tokens_equal(got.cpu(), expected, "generate_fast on CUDA (lists)")
    with pytest.raises(ValueError, match="input_ids is on cpu but the model is on cuda:0"):
        generate_fast(gpu, ids, mask.to(CUDA), max_new_tokens=8, pad_token_id=0, compile=False)
    with pytest.raises(ValueError, match="generator is on cpu"):
        generate_fast(gpu, ids.to(CUDA), mask.to(CUDA), max_new_tokens=4, pad_token_id=0, do_sample=True,
                      compile=False, generator=torch.Generator().manual_seed(0))


@pytest.mark.solution_only
@pytest.mark.parametrize("variant", [dict(), dict(decode_attention=False),
                                     dict(compile_options={"options": {"coordinate_descent_tuning": True}}),
                                     dict(linear_as_sums=4,
                                          compile_options={"options": {"coordinate_descent_tuning": True}})], ids=str)
def test_compiled_generate_fast_variants_on_cuda(model_pairs, variant):
    """The compiled CUDA-graph decode step of every variant decode_profile.py times (decode_attention,
    sdpa, inductor's coordinate-descent tuning, the linear layers as sums): generate's tokens (float32)."""
    from mlab_tfs.sampling import solution
    from mlab_tfs.sampling.fast import generate_fast

    cpu = model_pairs["base"]["ours"]
    gpu = copy.deepcopy(cpu).to(CUDA)
    ids, mask = padded_batch(VOCAB, [5, 3, 4], seed=18)
    expected = solution.generate(cpu, ids, mask, max_new_tokens=10, pad_token_id=0)
    got = generate_fast(gpu, ids.to(CUDA), mask.to(CUDA), max_new_tokens=10, pad_token_id=0, **variant)
    assert_tokens_equal(got.cpu(), expected, f"compiled generate_fast on CUDA, {variant}")
