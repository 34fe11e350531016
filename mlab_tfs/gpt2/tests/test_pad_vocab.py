"""Training-speed levers of mlab_tfs.gpt2.fast, equal to the plain model: pad_vocab (the
vocabulary padded to a multiple of 64 rows) and chunked_lm_loss (the cross-entropy a few
sequences at a time)."""

from __future__ import annotations

import warnings

import pytest
import torch

from mlab_tfs.gpt2 import fast, solution
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.tiny import GPT2_CONFIGS, left_padded_batch

pytestmark = pytest.mark.solution_only

EMBED_AND_HEAD = ("transformer.wte.weight", "lm_head.weight")


def _pair(folder, multiple=64):
    """(the plain model, the same weights padded), both in train mode without dropout."""
    plain = solution.GPT2LMHeadModel.from_pretrained(folder, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    padded = solution.GPT2LMHeadModel.from_pretrained(folder, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    fast.pad_vocab(padded, multiple)
    return plain.train(), padded.train()


def _batch(V, seed=9):
    ids, mask, pos = left_padded_batch(V, [7, 4, 6], seed=seed)
    return ids, mask, pos, ids.masked_fill(mask == 0, -100)


def _grads(model):
    # Every parameter under every name it has (a tied head under both).
    return {n: p.grad for n, p in model.named_parameters(remove_duplicate=False)}


@pytest.mark.parametrize("num_items", [None, 11])
@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
def test_padded_equals_plain_logits_loss_and_every_gradient(checkpoints, name, num_items):
    """The loss over the full padded width (labels -100 on the left padding; with and without
    transformers' num_items_in_batch) and every gradient equal the plain model's."""
    plain, padded = _pair(checkpoints[name])
    V = plain.config.vocab_size
    rows = -(-V // 64) * 64
    assert fast.padded_vocab_size(padded) == rows and fast.padded_vocab_size(plain) == V
    assert padded.transformer.wte.weight.shape[0] == padded.lm_head.weight.shape[0] == rows
    assert torch.equal(padded.transformer.wte.weight[V:], torch.zeros(rows - V, plain.config.n_embd))
    assert (padded.lm_head.weight is padded.transformer.wte.weight) == plain.config.tie_word_embeddings
    ids, mask, pos, labels = _batch(V)
    a = plain(ids, attention_mask=mask, position_ids=pos, labels=labels, num_items_in_batch=num_items)
    b = padded(ids, attention_mask=mask, position_ids=pos, labels=labels, num_items_in_batch=num_items)
    assert b.logits.shape == (3, 7, V) and bool(torch.isfinite(b.logits).all()), "a masked column in the logits"
    if rows > V:  # a view of the wider matmul's output, not a copy
        assert b.logits._base is not None and b.logits._base.shape[-1] == rows
        assert b.logits.data_ptr() == b.logits._base.data_ptr()
    assert_close(b.logits, a.logits, name="padded logits", atol=1e-5)
    assert_close(b.loss, a.loss, name="padded loss", atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    got, want = _grads(padded), _grads(plain)
    assert got.keys() == want.keys()
    for n, g in got.items():
        if n in EMBED_AND_HEAD:
            assert torch.equal(g[V:], torch.zeros_like(g[V:])), f"{n}: the padded rows got a gradient"
            g = g[:V]
        assert_close(g, want[n], name=f"padded model's gradient of {n}", atol=1e-5, rtol=1e-5)


def _record_loss_inputs(monkeypatch):
    """The logits every lm_loss call of the model's forward reads, and the gradient each gets."""
    seen = []

    def recording(logits, labels, num_items_in_batch=None):
        entry = {"logits": logits}
        seen.append(entry)
        if logits.requires_grad:
            logits.register_hook(lambda g: entry.__setitem__("grad", g))
        return lm_loss(logits, labels, num_items_in_batch)

    lm_loss = solution.lm_loss
    monkeypatch.setattr(solution, "lm_loss", recording)
    return seen


@pytest.mark.parametrize("name", ["base", "untied_erf_gelu_inverse_layer_scale"])
def test_the_loss_reads_the_full_padded_width(checkpoints, name, monkeypatch):
    """The model's lm_loss gets the head's whole matmul output (B, T, padded): one contiguous
    tensor, the padded columns -inf, whose first vocab_size columns are the returned logits
    (the same storage); its gradient arrives whole and contiguous, exactly 0 on the padding.
    Before, the loss read the (B, T, vocab_size) view and its gradient was scattered back."""
    plain, padded = _pair(checkpoints[name])
    V, rows = plain.config.vocab_size, fast.padded_vocab_size(padded)
    assert rows > V
    ids, mask, pos, labels = _batch(V)
    seen = _record_loss_inputs(monkeypatch)
    out = padded(ids, attention_mask=mask, position_ids=pos, labels=labels)
    (entry,) = seen
    wide = entry["logits"]
    assert wide.shape == (3, 7, rows) and wide.is_contiguous()
    assert "Slice" not in type(wide.grad_fn).__name__, f"the loss reads a slice ({wide.grad_fn})"
    # The returned logits: a view into the same storage, same strides, the first V columns.
    assert out.logits.untyped_storage().data_ptr() == wide.untyped_storage().data_ptr()
    assert out.logits.data_ptr() == wide.data_ptr() and out.logits.stride() == wide.stride()
    assert out.logits.shape == (3, 7, V) and torch.equal(out.logits, wide[..., :V])
    assert torch.equal(wide[..., V:], torch.full_like(wide[..., V:], float("-inf")))
    assert bool(torch.isfinite(out.logits).all())
    out.loss.backward()
    grad = entry["grad"]
    assert grad.shape == (3, 7, rows) and grad.is_contiguous()
    assert torch.equal(grad[..., V:], torch.zeros_like(grad[..., V:])), "a masked column got a gradient"
    # The plain model's loss reads its logits themselves, (B, T, V).
    seen.clear()
    out = plain(ids, attention_mask=mask, position_ids=pos, labels=labels)
    assert seen[0]["logits"] is out.logits and out.logits.shape == (3, 7, V)


def test_padded_head_outputs_and_logits_for_loss(checkpoints):
    """head(x) is the vocabulary's columns; head(x, full_width=True) and head.logits_for_loss(x)
    the whole width with the padding at -inf, through the module's call (its forward hooks run);
    fast.logits_for_loss(model, ids) is what the model's loss reads, for plain and padded models."""
    plain, padded = _pair(checkpoints["base"])  # 97 -> 128
    head, V = padded.lm_head, plain.config.vocab_size
    assert head.padding_mask.shape == (128,) and "padding_mask" not in padded.state_dict()
    x = torch.randn(2, 3, plain.config.n_embd, generator=torch.Generator().manual_seed(0))
    calls = []
    handle = head.register_forward_hook(lambda module, args, output: calls.append(tuple(output.shape)))
    narrow, wide, also = head(x), head(x, full_width=True), head.logits_for_loss(x)
    handle.remove()
    assert calls == [(2, 3, V), (2, 3, 128), (2, 3, 128)]
    assert torch.equal(wide, also) and torch.equal(wide[..., :V], narrow)
    assert_close(narrow, plain.lm_head(x), name="the padded head's logits", atol=1e-6)
    assert torch.equal(wide[..., V:], torch.full((2, 3, 128 - V), float("-inf")))
    ids, mask, pos, _ = _batch(V)
    with torch.no_grad():
        got = fast.logits_for_loss(padded, ids, attention_mask=mask, position_ids=pos)
        assert got.shape == (3, 7, 128)
        assert_close(got[..., :V], padded(ids, attention_mask=mask, position_ids=pos).logits, name="logits_for_loss",
                     atol=0)
        want = plain(ids, attention_mask=mask, position_ids=pos).logits
        assert_close(fast.logits_for_loss(plain, ids, attention_mask=mask, position_ids=pos), want,
                     name="logits_for_loss of the plain model", atol=0)
    for bad in (padded.transformer, torch.nn.Linear(2, 2), None):
        with pytest.raises(TypeError, match="logits_for_loss: model must be one of our causal LMs"):
            fast.logits_for_loss(bad, ids)


def test_padded_loss_compiled_by_inductor_equals_eager():
    """The real compiler (inductor, C++ on the CPU) fuses the -inf mask into the cross-entropy:
    the same loss and gradients, the padded rows' gradient exactly 0. The head and the loss
    only, so the compile takes seconds (the model compiles to one graph below, aot_eager)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.cat([torch.randn(37, 16, generator=g), torch.zeros(27, 16)]))
    head = fast.PaddedLMHead(weight, 37)
    hidden = torch.randn(3, 5, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 37, (3, 5), generator=g)
    labels[0, 2] = labels[2, 4] = -100

    def loss(h, y):
        return solution.lm_loss(head.logits_for_loss(h), y)

    want = loss(hidden, labels)
    want_grads = torch.autograd.grad(want, (hidden, weight))
    torch._dynamo.reset()
    got = torch.compile(loss, fullgraph=True)(hidden, labels)
    got_grads = torch.autograd.grad(got, (hidden, weight))
    assert_close(got, want, name="inductor's padded loss", atol=1e-6)
    for n, a, b in zip(("hidden", "weight"), got_grads, want_grads):
        assert_close(a, b, name=f"inductor's gradient of {n}", atol=1e-6)
    assert torch.equal(got_grads[1][37:], torch.zeros(27, 16))
    narrow = solution.lm_loss(hidden @ weight[:37].T, labels)
    assert_close(got, narrow, name="inductor's padded loss vs the unpadded head's", atol=1e-6)


def test_padded_rows_stay_zero_and_training_tracks_plain(checkpoints):
    """Three AdamW steps with weight decay: the same weights as the plain model's, padding rows still 0."""
    plain, padded = _pair(checkpoints["untied_erf_gelu_inverse_layer_scale"])
    V = plain.config.vocab_size
    ids, mask, pos, labels = _batch(V, seed=3)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1) for m in (plain, padded)]
    for _ in range(3):
        for model, opt in zip((plain, padded), opts):
            model(ids, attention_mask=mask, position_ids=pos, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for key in EMBED_AND_HEAD:
        p = padded.get_parameter(key)
        assert torch.equal(p[V:], torch.zeros_like(p[V:])), f"{key}: AdamW moved a padding row"
    for (n, p), q in zip(plain.state_dict().items(), padded.state_dict().values()):
        assert_close(q, p, name=f"{n} after 3 AdamW steps", atol=1e-5)


def test_ids_past_the_vocabulary_are_still_refused(checkpoints):
    _, padded = _pair(checkpoints["base"])  # 97 ids, 128 rows
    ids = torch.tensor([[1, 2, 97]])
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 97\).*got 97"):
        padded(ids)
    with pytest.raises(ValueError, match="labels"):
        padded(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 127]]))


def test_pad_vocab_twice_and_bad_arguments(checkpoints):
    _, padded = _pair(checkpoints["base"])  # 97 -> 128
    weight = padded.transformer.wte.weight
    assert fast.pad_vocab(padded, 64) is padded and padded.transformer.wte.weight is weight, "idempotent"
    assert fast.pad_vocab(padded, 128) is padded and padded.transformer.wte.weight is weight, "same size: no-op"
    with pytest.raises(ValueError, match="padded already, to 128 rows; multiple=256 would need 256"):
        fast.pad_vocab(padded, 256)
    fresh = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    for bad, err, match in ((0, ValueError, "got 0"), (-64, ValueError, "got -64"), (64.0, TypeError, "got 64.0"),
                            (True, TypeError, "got True"), ("64", TypeError, "got '64'")):
        with pytest.raises(err, match=f"multiple must be a positive int.*{match}"):
            fast.pad_vocab(fresh, bad)
    with pytest.raises(TypeError, match="model must be mlab_tfs.gpt2.solution.GPT2LMHeadModel, got mlab_tfs.gpt2.solution.GPT2Model"):
        fast.pad_vocab(fresh.transformer)
    assert fast.pad_vocab(fresh, 1).transformer.wte.weight.shape[0] == 97, "multiple=1: nothing to pad"


@pytest.mark.parametrize("name", ["base", "untied_erf_gelu_inverse_layer_scale"])
def test_saved_state_is_trimmed_and_loads_into_transformers(checkpoints, name, tmp_path):
    import transformers

    plain, padded = _pair(checkpoints[name])
    plain.eval(), padded.eval()
    state = padded.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in plain.state_dict().items()}
    hf_state = solution.to_hf_state_dict(state, padded.config)
    assert hf_state.keys() == solution.to_hf_state_dict(plain.state_dict(), plain.config).keys()
    assert hf_state["transformer.wte.weight"].shape[0] == plain.config.vocab_size

    padded.save_pretrained(tmp_path / "saved")
    theirs, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not (info["mismatched_keys"] or info["missing_keys"] or info["unexpected_keys"]), info
    ids = torch.randint(0, plain.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(theirs(ids).logits, padded(ids).logits, name="transformers' logits of the saved model", atol=1e-5)
        back = solution.GPT2LMHeadModel.from_pretrained(tmp_path / "saved")
        assert back.transformer.wte.weight.shape[0] == plain.config.vocab_size, "from_pretrained: unpadded"
        assert_close(back(ids).logits, padded(ids).logits, name="our reload of the saved model", atol=1e-6)

    # The trimmed state dict loads back into a padded model (padding rows zero again).
    again = fast.pad_vocab(solution.GPT2LMHeadModel(padded.config))
    again.load_state_dict(state)
    for key in EMBED_AND_HEAD:
        assert_close(again.get_parameter(key), padded.get_parameter(key), name=f"{key} loaded back", atol=0)
    padded.save_pretrained(tmp_path / "given", state_dict=padded.state_dict())  # save_pretrained(state_dict=...)
    assert transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "given").lm_head.weight.shape[0] == \
        plain.config.vocab_size
    from mlab_tfs import as_transformers  # transformers' own save_pretrained, through the adapter

    as_transformers(padded).save_pretrained(tmp_path / "adapter")
    theirs, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "adapter", output_loading_info=True)
    assert not (info["mismatched_keys"] or info["missing_keys"] or info["unexpected_keys"]), info
    with torch.no_grad():
        assert_close(theirs(ids).logits, padded(ids).logits, name="logits saved through as_transformers", atol=1e-5)


def test_samplers_never_see_or_emit_padded_ids(checkpoints):
    """Even with huge padding rows (which would win every step if a sampler saw them), greedy
    decoding equals the plain model's and sampling stays inside the vocabulary."""
    from mlab_tfs.sampling import generate
    from mlab_tfs.sampling.fast import generate_fast

    plain, padded = _pair(checkpoints["base"])
    plain.eval(), padded.eval()
    V = plain.config.vocab_size
    with torch.no_grad():
        padded.lm_head.weight[V:] = 50.0 * padded.lm_head.weight[:V].mean(0).sign()
    ids, mask, _ = left_padded_batch(V, [5, 3], seed=2)
    for decode, kw in ((generate, {}), (generate_fast, dict(compile=False))):
        want = decode(plain, ids, mask, max_new_tokens=12, pad_token_id=0, **kw)
        got = decode(padded, ids, mask, max_new_tokens=12, pad_token_id=0, **kw)
        assert torch.equal(got, want), f"{decode.__name__}: {got.tolist()} != {want.tolist()}"
        sampled = decode(padded, ids, mask, max_new_tokens=30, pad_token_id=0, do_sample=True, temperature=5.0,
                         generator=torch.Generator().manual_seed(0), **kw)
        assert int(sampled.max()) < V, f"{decode.__name__} sampled a padded id: {sampled.tolist()}"
        assert len(set(sampled[:, 5:].flatten().tolist())) > 10, "temperature 5: many different ids"


def test_trainer_trains_a_padded_model_as_the_plain_one(checkpoints, tmp_path):
    """transformers' Trainer: the same per-step losses (two accumulated micro-batches, so
    num_items_in_batch reaches the loss), and its saved checkpoint is the trimmed state."""
    import transformers

    plain, padded = _pair(checkpoints["base"])
    V = plain.config.vocab_size
    ids, mask, _ = left_padded_batch(V, [8, 5, 7, 3, 8, 6, 2, 8], seed=3)
    rows = [dict(input_ids=i, attention_mask=m, labels=i.masked_fill(m == 0, -100)) for i, m in zip(ids, mask)]

    def losses(model, out):
        args = transformers.TrainingArguments(str(out), per_device_train_batch_size=2, max_steps=4,
                                              learning_rate=3e-3, logging_steps=1, report_to=[], use_cpu=True,
                                              disable_tqdm=True, seed=0, save_strategy="no",
                                              gradient_accumulation_steps=2, dataloader_drop_last=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = transformers.Trainer(model=model, args=args, train_dataset=rows)
            trainer.train()
            trainer.save_model(str(out / "final"))
        return torch.tensor([h["loss"] for h in trainer.state.log_history if "loss" in h])

    a, b = losses(plain, tmp_path / "plain"), losses(padded, tmp_path / "padded")
    assert len(a) == 4
    assert_close(b, a, name="Trainer's per-step losses, padded vs plain", atol=1e-5)
    saved = solution.GPT2LMHeadModel.from_pretrained(tmp_path / "padded" / "final", config=plain.config)
    assert saved.transformer.wte.weight.shape[0] == V
    assert_close(saved.transformer.wte.weight, padded.transformer.wte.weight[:V], name="Trainer's saved wte", atol=0)


# ---------------------------------------------------------------------------------------
# chunked_lm_loss == lm_loss
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 10_000], ids=["one-position", "uneven", "one-chunk"])
@pytest.mark.parametrize("num_items", [None, 11])
def test_chunked_loss_equals_lm_loss(chunk, num_items):
    g = torch.Generator().manual_seed(0)
    wide = (torch.randn(3, 5, 40, generator=g) * 4).requires_grad_()
    logits = wide[..., :37]  # a padded head's view
    labels = torch.randint(0, 37, (3, 5), generator=g)
    labels[0, 2] = labels[2, 4] = -100
    want = solution.lm_loss(logits, labels, num_items)
    (want_grad,) = torch.autograd.grad(want, wide)
    got = fast.chunked_lm_loss(logits, labels, num_items, positions_per_chunk=chunk)
    (got_grad,) = torch.autograd.grad(got, wide)
    assert_close(got, want, name="chunked loss", atol=1e-6)
    assert_close(got_grad, want_grad, name="chunked loss gradient", atol=1e-6)
    assert torch.equal(got_grad[..., 37:], torch.zeros_like(got_grad[..., 37:]))


def test_chunked_loss_over_the_full_masked_width():
    """A padded model's full-width logits (padding -inf): the loss and gradient of the
    vocabulary's columns alone, zero gradient on the padding; vocab_size bounds the labels."""
    g = torch.Generator().manual_seed(4)
    wide = torch.cat([torch.randn(3, 5, 37, generator=g) * 4, torch.full((3, 5, 27), float("-inf"))], -1)
    wide.requires_grad_()
    labels = torch.randint(0, 37, (3, 5), generator=g)
    labels[1, 0] = -100
    want = solution.lm_loss(wide[..., :37], labels, 9)
    (want_grad,) = torch.autograd.grad(want, wide)
    got = fast.chunked_lm_loss(wide, labels, 9, positions_per_chunk=5, vocab_size=37)
    (got_grad,) = torch.autograd.grad(got, wide)
    assert_close(got, want, name="chunked loss over the masked width", atol=1e-6)
    assert_close(got_grad, want_grad, name="its gradient", atol=1e-6)
    assert torch.equal(got_grad[..., 37:], torch.zeros(3, 5, 27))
    wrong = labels.clone()
    wrong[2, 3] = 40  # a padded id: an infinite loss if it were counted
    with pytest.raises(ValueError, match=r"labels must be in \[0, 37\) or -100 \(ignored\), got 40 at index \(2, 3\)"):
        fast.chunked_lm_loss(wide, wrong, vocab_size=37)
    for bad, error, says in ((0, ValueError, r"in \[1, 64\], got 0"), (65, ValueError, r"in \[1, 64\], got 65"),
                             (37.0, TypeError, "must be an int"), (True, TypeError, "must be an int")):
        with pytest.raises(error, match=f"chunked_lm_loss: vocab_size .*{says}"):
            fast.chunked_lm_loss(wide, labels, vocab_size=bad)


def test_chunked_loss_in_a_model_and_in_bf16(checkpoints):
    plain, padded = _pair(checkpoints["base"])
    V = plain.config.vocab_size
    ids, mask, pos, labels = _batch(V)
    want = plain(ids, attention_mask=mask, position_ids=pos, labels=labels).loss
    want.backward()
    wide = fast.logits_for_loss(padded, ids, attention_mask=mask, position_ids=pos)  # the full padded width
    assert wide.shape[-1] == fast.padded_vocab_size(padded) > V
    got = fast.chunked_lm_loss(wide, labels, positions_per_chunk=7, vocab_size=V)
    got.backward()
    assert_close(got, want, name="chunked loss of the padded model", atol=1e-6)
    for n, p in plain.named_parameters():
        q = padded.get_parameter(n).grad
        q = q[: p.shape[0]] if n in EMBED_AND_HEAD else q
        assert_close(q, p.grad, name=f"gradient of {n} through the chunked loss", atol=1e-5, rtol=1e-5)
    # bf16 logits: both losses upcast to float32 first, so they agree to float32 rounding.
    x = torch.randn(2, 6, 33, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16).requires_grad_()
    y = torch.randint(0, 33, (2, 6), generator=torch.Generator().manual_seed(2))
    a, b = solution.lm_loss(x, y), fast.chunked_lm_loss(x, y, positions_per_chunk=6)
    assert_close(b, a, name="chunked bf16 loss", atol=1e-6)
    (ga,), (gb,) = torch.autograd.grad(a, x), torch.autograd.grad(b, x)
    assert gb.dtype == torch.bfloat16
    assert_close(gb.float(), ga.float(), name="chunked bf16 gradient", atol=1e-6)


def test_chunked_loss_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\) and labels \(B, T\), got logits \(2, 5\)"):
        fast.chunked_lm_loss(torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels \(2, 4\)"):
        fast.chunked_lm_loss(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


def test_chunked_loss_refuses_labels_and_arguments_lm_loss_would_not_take():
    """A label outside [0, V) other than -100 was counted as id 0 (a silent wrong loss, where
    lm_loss raises); float labels, int logits and a bad positions_per_chunk failed deep inside."""
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    for bad in (-1, 7):
        wrong = labels.clone()
        wrong[1, 2] = bad
        with pytest.raises(ValueError, match=rf"labels must be in \[0, 7\) or -100 \(ignored\), got {bad} at index \(1, 2\)"):
            fast.chunked_lm_loss(logits, wrong)
    with pytest.raises(ValueError, match="labels must hold integer ids"):
        fast.chunked_lm_loss(logits, labels.float())
    with pytest.raises(TypeError, match="logits must be a floating-point tensor .*got a torch.int64 tensor"):
        fast.chunked_lm_loss(logits.long(), labels)
    with pytest.raises(TypeError, match="logits must be a floating-point tensor .*got a list"):
        fast.chunked_lm_loss(logits.tolist(), labels)
    for bad, error in ((None, TypeError), (True, TypeError), (1.5, TypeError), (0, ValueError), (-5, ValueError)):
        with pytest.raises(error, match="positions_per_chunk must be an int"):
            fast.chunked_lm_loss(logits, labels, positions_per_chunk=bad)
    assert_close(fast.chunked_lm_loss(logits, labels.int()), solution.lm_loss(logits, labels), name="int32 labels",
                 atol=1e-6)


def test_padded_vocab_size_refuses_what_is_not_a_model():
    for bad in (None, torch.nn.Linear(2, 2)):
        with pytest.raises(TypeError, match=rf"padded_vocab_size: model must be one of our models .*got .*{type(bad).__name__}"):
            fast.padded_vocab_size(bad)


def test_padded_model_and_chunked_loss_compile_to_one_graph(checkpoints):
    """torch.compile(fullgraph=True) of the padded model with either loss, each over the full
    padded width: no graph break (the head's two outputs, the chunked loss's
    autograd.Function), the same loss and gradients as eager. backend="aot_eager" traces
    forward and backward as inductor would, without generating code (seconds on a CPU);
    test_padded_loss_compiled_by_inductor_equals_eager runs the head and loss through
    inductor, and ``benchmarks/gpt2_train.py --smoke --rows "compile=ours+pad,ours+pad+chunked"``
    the whole step (about a minute on 2 cores)."""
    _, padded = _pair(checkpoints["base"])
    ids, mask, pos, labels = _batch(padded.config.vocab_size, seed=5)

    def plain_loss(i, m, p, y):
        return padded(i, attention_mask=m, position_ids=p, labels=y).loss

    def chunked_loss(i, m, p, y):
        wide = fast.logits_for_loss(padded, i, attention_mask=m, position_ids=p)
        return fast.chunked_lm_loss(wide, y, positions_per_chunk=7, vocab_size=padded.config.vocab_size)

    for fn in (plain_loss, chunked_loss):
        padded.zero_grad(set_to_none=True)
        want = fn(ids, mask, pos, labels)
        want.backward()
        want_grads = {n: p.grad.clone() for n, p in padded.named_parameters()}
        padded.zero_grad(set_to_none=True)
        torch._dynamo.reset()
        got = torch.compile(fn, fullgraph=True, backend="aot_eager")(ids, mask, pos, labels)
        got.backward()
        assert_close(got, want, name=f"compiled {fn.__name__}", atol=1e-6)
        for n, p in padded.named_parameters():
            assert_close(p.grad, want_grads[n], name=f"compiled {fn.__name__}: gradient of {n}", atol=1e-6)


def test_training_benchmark_smoke_on_the_cpu(tmp_path):
    """benchmarks/gpt2_train.py --smoke: a tiny GPT-2 (vocabulary 1000, padded to 1024) on the
    CPU in float32; every lever's warm-up losses (two steps: forward, backward, AdamW) equal
    transformers' within 1e-4, and run_all.py's table lists each row beside transformers."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[3] / "benchmarks"
    out = tmp_path / "train.json"
    rows = "eager=ours,ours+pad,ours+pad+chunked,hf"
    done = subprocess.run([sys.executable, str(bench / "gpt2_train.py"), "--smoke", "--rows", rows, "--out", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["complete"] and data["smoke"] and data["batch"] == 2 and data["seq"] == 32
    got = {r["impl"]: r for r in data["rows"]}
    assert list(got) == ["ours", "ours+pad", "ours+pad+chunked", "hf"]
    assert got["ours+pad+chunked"]["label"] == "ours + padded vocab + chunked loss"
    for impl, r in got.items():
        assert len(r["warmup_losses"]) == 2 and r["mfu_989"] is None and r["tokens_per_s"] > 0
        for a, b in zip(r["warmup_losses"], got["hf"]["warmup_losses"]):
            assert abs(a - b) <= 1e-4, (impl, r["warmup_losses"], got["hf"]["warmup_losses"])
    sys.path.insert(0, str(bench))
    try:
        import run_all
    finally:
        sys.path.remove(str(bench))
    lines = run_all.table({"train": {**data, "status": "ok", "wall_s": 1.0}})
    body = [ln for ln in lines if ln.startswith("| train")]
    assert [ln.split(" | ")[1] for ln in body] == [
        "ours, eager", "ours + padded vocab, eager", "ours + padded vocab + chunked loss, eager"]
    ratio = got["ours+pad"]["tokens_per_s"] / got["hf"]["tokens_per_s"]
    assert body[1].split(" | ")[4] == f"{ratio:.2f}x"


def test_training_benchmark_refuses_counts_below_one():
    """--steps 0 (or --batch 0, --seq 0) was taken as "the default" (``args.steps or 20``): a
    run of another size than asked for. Refused before any model is built."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "gpt2_train.py"
    for flag, value, least in (("--steps", "0", 1), ("--batch", "0", 1), ("--seq", "-2", 1), ("--warmup", "-1", 0)):
        done = subprocess.run([sys.executable, str(script), "--smoke", flag, value], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and f"{flag} must be an int >= {least}, got {value}" in done.stderr, done.stderr[-2000:]


def test_cpu_forward_benchmark_refuses_bad_counts_and_shapes():
    """--threads 0 failed inside torch.set_num_threads, --repeats 0 in the median of nothing,
    a malformed --shapes in int(): each a SystemExit naming the flag, before any model loads."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "cpu_forward.py"
    for flag, value, says in (("--threads", "0", "--threads must be an int >= 1, got 0"),
                              ("--repeats", "0", "--repeats must be an int >= 1, got 0"),
                              ("--shapes", "1x", "--shapes must be BATCHxTOKENS"),
                              ("--shapes", "0x8", "--shapes must be BATCHxTOKENS")):
        done = subprocess.run([sys.executable, str(script), flag, value], capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and says in done.stderr, done.stderr[-2000:]


def test_padded_head_refuses_a_vocabulary_past_its_rows():
    """vocab_size above the weight's rows returned fewer logits than vocab_size, silently."""
    w = torch.nn.Parameter(torch.zeros(8, 3))
    assert fast.PaddedLMHead(w, 5)(torch.zeros(2, 3)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"vocab_size must be an int in \[1, 8\], got 9"):
        fast.PaddedLMHead(w, 9)
    with pytest.raises(TypeError, match="vocab_size must be an int, got a float"):
        fast.PaddedLMHead(w, 5.0)
    with pytest.raises(ValueError, match=r"weight must be a 2-D \(padded_vocab_size, C\) tensor, got shape \(8,\)"):
        fast.PaddedLMHead(torch.nn.Parameter(torch.zeros(8)), 5)


def test_padding_mask_is_refilled_by_load_state_dict_after_meta_init():
    """The mask is not saved: a padded model built on the meta device and materialised with
    to_empty (uninitialised memory) gets it back from load_state_dict. Untied: to_empty
    materialises a tied Parameter once per module, which unties it (PyTorch's, padded or not)."""
    torch.manual_seed(0)
    config = dict(GPT2_CONFIGS["base"], tie_word_embeddings=False)
    src = fast.pad_vocab(solution.GPT2LMHeadModel(solution.GPT2Config(**config))).eval()
    with torch.device("meta"):
        model = fast.pad_vocab(solution.GPT2LMHeadModel(solution.GPT2Config(**config)))
    model.to_empty(device="cpu").eval()
    model.lm_head.padding_mask.fill_(float("nan"))  # what empty memory may hold
    model.load_state_dict(src.state_dict())
    assert torch.equal(model.lm_head.padding_mask, src.lm_head.padding_mask)
    ids = torch.tensor([[1, 5, 9, 2]])
    torch.testing.assert_close(model(ids, labels=ids).loss, src(ids, labels=ids).loss, rtol=0, atol=0)
