"""What tools look for on a model (mlab_tfs.surface), against transformers' own model on the
same weights: inputs_embeds (outputs 1e-5, gradients 1e-4 relative), return_dict=False tuples
element by element, .device / .dtype, config.model_type / architectures, tie_weights(), and
accelerate's init_empty_weights + load_checkpoint_and_dispatch."""

from __future__ import annotations

import pytest
import torch
import transformers

from mlab_tfs.bert import solution as bert
from mlab_tfs.deberta import solution as deberta
from mlab_tfs.gpt2 import solution as gpt2
from mlab_tfs.llama import solution as llama
from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import under_test
from mlab_tfs.testing.compare import assert_close

# name -> (our class, transformers' class, checkpoint maker, the transformers class it is saved from)
CASES = {
    "gpt2_lm": (gpt2.GPT2LMHeadModel, transformers.GPT2LMHeadModel, lambda r: tiny.gpt2_checkpoint(r, "base")),
    "gpt2_body": (gpt2.GPT2Model, transformers.GPT2Model, lambda r: tiny.gpt2_checkpoint(r, "deep_narrow_heads")),
    "gpt2_untied": (gpt2.GPT2LMHeadModel, transformers.GPT2LMHeadModel,
                    lambda r: tiny.gpt2_checkpoint(r, "untied_erf_gelu_inverse_layer_scale")),
    "bert_model": (bert.BertModel, transformers.BertModel, lambda r: tiny.bert_checkpoint(r, "deep_narrow_heads")),
    "bert_mlm": (bert.BertForMaskedLM, transformers.BertForMaskedLM,
                 lambda r: tiny.bert_checkpoint(r, "base", head="mlm")),
    "bert_classifier": (bert.BertForSequenceClassification, transformers.BertForSequenceClassification,
                        lambda r: tiny.bert_checkpoint(r, "multi_label", head="classifier")),
    # embedding_size 24 != hidden_size 32: inputs_embeds are (B, T, 24), before embed_proj.
    "deberta_mlm": (deberta.DebertaV2ForMaskedLM, transformers.DebertaV2ForMaskedLM,
                    lambda r: tiny.deberta_checkpoint(r, "c2p_embed_proj")),
    "deberta_model": (deberta.DebertaV2Model, transformers.DebertaV2Model,
                      lambda r: tiny.deberta_checkpoint(r, "v2_conv")),
    "llama_lm": (llama.LlamaForCausalLM, transformers.LlamaForCausalLM,
                 lambda r: tiny.llama_checkpoint(r, "llama/gqa")),
    "llama_body": (llama.LlamaModel, transformers.LlamaModel,
                   lambda r: tiny.llama_checkpoint(r, "llama/llama3_rope_head_dim")),
    "qwen3_tied": (llama.LlamaForCausalLM, transformers.Qwen3ForCausalLM,
                   lambda r: tiny.llama_checkpoint(r, "qwen3/qk_norm_tied")),
}
DECODERS = ("gpt2", "llama", "qwen3")  # causal: left padding, a KV cache


def _decoder(name: str) -> bool:
    return name.startswith(DECODERS)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, pytestconfig):
    """name -> (ours, transformers'), from one folder, fp32, eval mode, eager attention."""
    root = tmp_path_factory.mktemp("surface")
    out = {}
    for name, (cls, hf_cls, make) in CASES.items():
        folder = make(root / name)
        out[name] = (under_test(pytestconfig, cls).from_pretrained(folder).eval(),
                     hf_cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval())
    return out


def _main(out) -> torch.Tensor:
    return out.logits if "logits" in out.keys() else out.last_hidden_state


def _real(x: torch.Tensor, mask: torch.Tensor, decoder: bool) -> torch.Tensor:
    """A decoder's outputs at real tokens: a left-padding query sees no key at all, and what
    comes out there is each implementation's own (transformers' eager: a uniform average)."""
    return x[mask.bool()] if decoder and x.dim() == 3 else x


def _padded(model, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, model.config.vocab_size, (3, 7), generator=g)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    if model.config.model_type in DECODERS:
        mask = mask.flip(-1)  # decoders pad on the left
    return ids, mask


@pytest.mark.parametrize("name", list(CASES))
def test_inputs_embeds_equal_transformers(pairs, name):
    """inputs_embeds replaces the word-embedding lookup only (positions, token types, DeBERTa's
    embed_proj still apply), as in transformers; outputs and the gradient wrt inputs_embeds equal theirs."""
    ours, hf = pairs[name]
    ids, mask = _padded(ours)
    width = hf.get_input_embeddings().weight.shape[1]
    assert ours.get_input_embeddings().weight.shape == hf.get_input_embeddings().weight.shape
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(*ids.shape, width, generator=g) * 0.5
    mine_x, theirs_x = embeds.clone().requires_grad_(), embeds.clone().requires_grad_()
    kwargs = dict(attention_mask=mask)
    if _decoder(name):
        kwargs["use_cache"] = False
    decoder = _decoder(name)
    mine = _real(_main(ours(inputs_embeds=mine_x, **kwargs)), mask, decoder)
    theirs = _real(_main(hf(inputs_embeds=theirs_x, **kwargs)), mask, decoder)
    assert_close(mine, theirs, name=f"{name} from inputs_embeds", atol=1e-5)
    weights = torch.randn(mine.shape, generator=g)
    (mine * weights).sum().backward()
    (theirs * weights).sum().backward()
    rel = ((mine_x.grad - theirs_x.grad).norm() / theirs_x.grad.norm()).item()
    assert rel < 1e-4, f"{name}: gradient wrt inputs_embeds differs from transformers' by {rel:.2e} (relative)"
    # The looked-up embeddings as inputs_embeds give what the ids give.
    with torch.no_grad():
        looked_up = ours.get_input_embeddings()(ids)
        assert_close(_main(ours(inputs_embeds=looked_up, **kwargs)), _main(ours(ids, **kwargs)),
                     name=f"{name}: embeddings of the ids vs the ids", atol=1e-6)


@pytest.mark.parametrize("name, hook", [("gpt2_lm", "hook_embed"), ("bert_mlm", "embed.hook_embed"),
                                        ("deberta_mlm", "embed.hook_embed")])
def test_inputs_embeds_are_what_the_embed_hook_sees(pairs, name, hook):
    """The word embedding's hook point (TransformerLens's hook_embed) holds inputs_embeds; the
    position / token-type hooks hold their lookups, as with ids."""
    ours, _ = pairs[name]
    embeds = torch.randn(2, 4, ours.get_input_embeddings().weight.shape[1], generator=torch.Generator().manual_seed(5))
    ids = torch.zeros(2, 4, dtype=torch.long)
    _, cache = ours.run_with_cache(inputs_embeds=embeds)
    _, from_ids = ours.run_with_cache(ids)
    assert torch.equal(cache[hook], embeds)
    pos = hook.replace("hook_embed", "hook_pos_embed")
    if pos in from_ids:
        assert torch.equal(cache[pos], from_ids[pos])


def test_inputs_embeds_reach_the_embed_hook_and_leave_the_table_without_gradient(pairs):
    """hook_embed sees inputs_embeds (the word embedding's output, as TransformerLens's hook_embed
    is); the lookup table gets no gradient from a call with inputs_embeds."""
    ours, _ = pairs["gpt2_lm"]
    embeds = torch.randn(2, 4, ours.config.n_embd, generator=torch.Generator().manual_seed(2))
    _, cache = ours.run_with_cache(inputs_embeds=embeds)
    assert torch.equal(cache["hook_embed"], embeds)
    ours.zero_grad()
    ours.train(False)
    ours(inputs_embeds=embeds.requires_grad_(), labels=torch.zeros(2, 4, dtype=torch.long)).loss.backward()
    # The table is the tied head too: its gradient is the head's alone, as transformers' is.
    hf = pairs["gpt2_lm"][1]
    hf.zero_grad()
    hf(inputs_embeds=embeds.detach().clone().requires_grad_(), labels=torch.zeros(2, 4, dtype=torch.long),
       use_cache=False).loss.backward()
    assert_close(ours.transformer.wte.weight.grad, hf.transformer.wte.weight.grad, name="tied table grad", atol=1e-6)
    ours.zero_grad()
    hf.zero_grad()


@pytest.mark.parametrize("call, match", [
    (lambda m, ids, e: m(ids, inputs_embeds=e), "input_ids or inputs_embeds, not both"),
    (lambda m, ids, e: m(input_ids=ids, inputs_embeds=e), "input_ids or inputs_embeds, not both"),
    (lambda m, ids, e: m(), "input_ids .* or inputs_embeds .*; got neither"),
    (lambda m, ids, e: m(None, None), "input_ids .* or inputs_embeds .*; got neither"),
    (lambda m, ids, e: m(ids.float()), "input_ids must hold integer token ids"),
    (lambda m, ids, e: m(inputs_embeds=e[..., :-1]), r"inputs_embeds must have shape \(batch, seq, 32\)"),
    (lambda m, ids, e: m(inputs_embeds=e[0]), r"inputs_embeds must have shape \(batch, seq, 32\)"),
    (lambda m, ids, e: m(inputs_embeds=e.long()), "inputs_embeds must be a floating tensor"),
    (lambda m, ids, e: m(inputs_embeds=e[:, :0]), "at least one sequence of at least one position"),
    (lambda m, ids, e: m(inputs_embeds=e.tolist()), "inputs_embeds must be a torch.Tensor"),
    (lambda m, ids, e: m(ids, return_dict="no"), "return_dict must be True, False or None"),
])
def test_bad_inputs_embeds_or_return_dict_is_named(pairs, call, match):
    ours, _ = pairs["gpt2_lm"]
    ids = torch.zeros(2, 3, dtype=torch.long)
    embeds = torch.zeros(2, 3, 32)
    with pytest.raises((TypeError, ValueError), match=match):
        call(ours, ids, embeds)


def _assert_tuples_equal(mine: tuple, theirs: tuple, name: str) -> None:
    assert isinstance(mine, tuple) and len(mine) == len(theirs), f"{name}: {len(mine)} elements, transformers {len(theirs)}"
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if isinstance(b, transformers.Cache):  # our KVCache against transformers' DynamicCache
            b = tuple((layer.keys, layer.values) for layer in b.layers)
            a = a.to_legacy_cache()
        if isinstance(b, torch.Tensor):
            assert_close(a, b, name=f"{name}[{i}]", atol=1e-5)
        else:
            _assert_tuples_equal(tuple(a), tuple(b), f"{name}[{i}]")


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("extras", ["plain", "everything"])
def test_return_dict_false_gives_transformers_tuple(pairs, name, extras):
    ours, hf = pairs[name]
    ids, mask = _padded(ours, seed=3)
    if _decoder(name):
        mask = torch.ones_like(mask)  # no left padding: every query of a decoder sees a key (see _real)
    kwargs = dict(attention_mask=mask)
    if extras == "everything":
        kwargs.update(output_hidden_states=True, output_attentions=True)
        if name == "bert_classifier":
            kwargs["labels"] = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]])
        elif name in ("gpt2_lm", "gpt2_untied", "bert_mlm", "deberta_mlm", "llama_lm", "qwen3_tied"):
            kwargs["labels"] = ids.masked_fill(mask == 0, -100)
    if _decoder(name):
        kwargs["use_cache"] = extras == "everything"
    with torch.no_grad():
        mine, theirs = ours(ids, return_dict=False, **kwargs), hf(ids, return_dict=False, **kwargs)
        assert isinstance(ours(ids, return_dict=True, **kwargs), type(ours(ids, **kwargs)))
    _assert_tuples_equal(mine, theirs, f"{name} tuple")


@pytest.mark.parametrize("name", list(CASES))
def test_device_dtype_model_type_and_architectures_read_as_transformers(pairs, name):
    ours, hf = pairs[name]
    assert ours.device == hf.device == torch.device("cpu")
    assert ours.dtype == hf.dtype == torch.float32
    assert ours.config.model_type == hf.config.model_type
    assert ours.config.architectures == hf.config.architectures  # config.json's list, as transformers keeps it
    assert isinstance(ours.config.architectures, list)
    assert ours.config.to_dict()["architectures"] == ours.config.architectures
    fresh = type(ours.config)()
    assert fresh.architectures == list(type(ours.config).architectures) and fresh.architectures is not (
        type(ours.config)().architectures)  # each instance its own list
    # Fresh models: a round trip of the shared ones through bf16 would round their weights for
    # the tests that run after this one.
    other = type(ours)(ours.config).to(torch.bfloat16)
    assert other.dtype == torch.bfloat16 == type(hf)(hf.config).to(torch.bfloat16).dtype


@pytest.mark.parametrize("name", ["gpt2_lm", "bert_mlm", "deberta_mlm", "qwen3_tied"])
def test_tie_weights_ties_per_config_and_only_then(pairs, name):
    ours, hf = pairs[name]
    model = type(ours)(ours.config)
    head, table = model.get_output_embeddings(), model.get_input_embeddings()
    assert head.weight is table.weight
    assert type(hf.get_output_embeddings()).__name__ == "Linear" and type(head).__name__ == "Linear"
    head.weight = torch.nn.Parameter(head.weight.detach().clone())  # untied by hand
    assert not model.weights_are_tied()
    model.tie_weights()
    model.tie_weights()  # twice: no second set of state-dict hooks
    assert head.weight is table.weight and model.weights_are_tied()
    assert sorted(model.state_dict()) == sorted(type(ours)(ours.config).state_dict())  # the alias saved once
    import dataclasses

    untied = type(ours)(dataclasses.replace(ours.config, tie_word_embeddings=False))
    untied.tie_weights()
    assert untied.get_output_embeddings().weight is not untied.get_input_embeddings().weight


@pytest.mark.parametrize("name", ["gpt2_lm", "bert_mlm", "deberta_mlm", "gpt2_untied", "qwen3_tied", "llama_lm"])
@pytest.mark.parametrize("call_tie_weights", [True, False])
@pytest.mark.parametrize("device_map", [{"": "cpu"}, "auto"])
def test_accelerate_empty_weights_and_dispatch_give_the_loaded_model(pairs, tmp_path, name, call_tie_weights,
                                                                     device_map):
    """A raw model saved by accelerator.save_model (our names, the tied head once), loaded into a
    model built under init_empty_weights: tied as configured, logits equal to from_pretrained's."""
    from accelerate import Accelerator, init_empty_weights, load_checkpoint_and_dispatch

    ours, _ = pairs[name]
    Accelerator(cpu=True).save_model(ours, tmp_path)
    with init_empty_weights():
        empty = type(ours)(ours.config)
    if call_tie_weights:
        empty.tie_weights()  # accelerate's documented step; the tie survives without it too
    model = load_checkpoint_and_dispatch(empty, str(tmp_path), device_map=device_map).eval()
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model.weights_are_tied() is ours.config.tie_word_embeddings
    ids, mask = _padded(ours, seed=4)
    with torch.no_grad():
        # Not bit for bit: the dispatched weights are views into the loaded checkpoint, at
        # addresses that are not 64-byte aligned, and with more than one thread the CPU
        # kernels then sum in another order (DeBERTa's differ by ~2e-7 at 2 threads; equal
        # at 1). Same weights (checked below), so float32 rounding is all that may differ.
        assert_close(_main(model(ids, attention_mask=mask)), _main(ours(ids, attention_mask=mask)),
                     name=f"{name}: dispatched vs from_pretrained", atol=1e-6)
    loaded, reference = model.state_dict(), ours.state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference), f"{name}: dispatched weights differ"


@pytest.mark.parametrize("name", ["gpt2_body", "bert_model", "bert_classifier", "deberta_mlm", "deberta_model"])
def test_every_model_names_both_neither_and_a_wrong_width(pairs, name):
    ours, _ = pairs[name]
    width = ours.get_input_embeddings().weight.shape[1]
    ids, embeds = torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, width)
    with pytest.raises(ValueError, match="input_ids or inputs_embeds, not both"):
        ours(ids, inputs_embeds=embeds)
    with pytest.raises(ValueError, match="got neither"):
        ours(attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match=rf"inputs_embeds must have shape \(batch, seq, {width}\)"):
        ours(inputs_embeds=torch.zeros(2, 3, width + 1))


@pytest.mark.parametrize("name", ["gpt2_lm", "bert_mlm", "deberta_mlm", "llama_lm"])
def test_inputs_embeds_compile_without_graph_breaks_and_equal_eager_and_transformers(pairs, name):
    """torch.compile(fullgraph=True) of a forward with inputs_embeds (and labels): no hook is
    registered while tracing; the loss and logits equal eager's and transformers'; the ids path
    of the same compiled model afterwards reads the table again."""
    import torch._dynamo

    ours, hf = pairs[name]
    ids, mask = _padded(ours)
    # A decoder's loss reads logits at t for the label at t + 1: both real (what comes out at a
    # left-padding query is each implementation's own).
    real = mask.bool() & torch.roll(mask.bool(), 1, 1) if _decoder(name) else mask.bool()
    labels = torch.where(real, torch.roll(ids, 1, 1), -100)
    width = hf.get_input_embeddings().weight.shape[1]
    embeds = torch.randn(*ids.shape, width, generator=torch.Generator().manual_seed(3)) * 0.5
    torch._dynamo.reset()
    compiled = torch.compile(ours, fullgraph=True, backend="eager")
    with torch.no_grad():
        got = compiled(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        eager = ours(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        theirs = hf(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        decoder = _decoder(name)
        assert_close(_real(got.logits, mask, decoder), _real(eager.logits, mask, decoder), name="compiled logits")
        assert_close(_real(got.logits, mask, decoder), _real(theirs.logits, mask, decoder), name="logits vs transformers")
        assert_close(got.loss, theirs.loss, name="loss vs transformers")
        by_ids = compiled(ids, attention_mask=mask)
        assert_close(_real(by_ids.logits, mask, decoder), _real(hf(ids, attention_mask=mask).logits, mask, decoder),
                     name="compiled ids path after inputs_embeds")
    torch._dynamo.reset()


def test_inputs_embeds_reach_a_word_embedding_replaced_after_build(pairs):
    """A table swapped in after the model was built (as resizing does) gets the hook on first use,
    and a failed forward leaves no inputs_embeds behind for the next ids forward."""
    ours, hf = pairs["gpt2_lm"]
    model = type(ours)(ours.config).eval()
    model.load_state_dict(ours.state_dict())
    table = torch.nn.Embedding(*model.transformer.wte.weight.shape)
    with torch.no_grad():
        table.weight.copy_(model.transformer.wte.weight)
    model.transformer.wte = table
    ids, mask = _padded(model)
    embeds = hf.get_input_embeddings()(ids).detach()
    with torch.no_grad():
        assert_close(model(inputs_embeds=embeds).logits, hf(inputs_embeds=embeds).logits, name="logits")
        with pytest.raises(ValueError):
            model(inputs_embeds=embeds, attention_mask=torch.ones(2, 2))  # a mask that does not fit
        assert_close(model(ids).logits, hf(ids).logits, name="ids after a failed inputs_embeds forward")
