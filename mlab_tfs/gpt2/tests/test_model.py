"""Exercise 9: the whole model against transformers' GPT2LMHeadModel, outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlab_tfs.gpt2.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import GPT2_CONFIGS, hf_gpt2, left_padded_batch

from .helpers import config_of, hf_default, hf_grads_as_ours, keep_mask, load_into, nearest, zero_blind_rows

# The learner's model is checked on the first two configs; the others switch on config
# options (untied head, erf GELU, per-layer attention scale, no scale) the guide leaves optional.
LEARNER_CONFIGS = ("base", "deep_narrow_heads")
CONFIGS = [
    pytest.param(name, marks=() if name in LEARNER_CONFIGS else pytest.mark.solution_only) for name in GPT2_CONFIGS
]

ATOL = 1e-5  # fp32 logits and losses
GRAD_RTOL = 1e-5  # per parameter, relative to its largest gradient entry


def pair(gpt2, folder):
    """(ours, transformers' as from_pretrained(folder) gives it: its default sdpa path) from one
    checkpoint; ours loaded with the solution's name map."""
    hf = hf_default(folder)
    return load_into(gpt2.GPT2LMHeadModel(config_of(hf)), hf), hf


def batch(cfg, padded: bool, seed: int = 0):
    if padded:
        ids, mask, pos = left_padded_batch(cfg.vocab_size, [7, 4, 1, 6], seed)
        return ids, dict(attention_mask=mask, position_ids=pos), mask.bool()
    ids = torch.randint(0, cfg.vocab_size, (3, 9), generator=torch.Generator().manual_seed(seed))
    return ids, {}, torch.ones_like(ids, dtype=torch.bool)


@pytest.mark.exercise("model")
def test_head_is_tied(gpt2, checkpoints):
    """First: a copied head gives the right logits, and only the gradients show it."""
    model, _ = pair(gpt2, checkpoints["base"])
    assert model.lm_head.weight is model.transformer.wte.weight, (
        "the LM head must be tied: self.lm_head.weight = self.transformer.wte.weight (one Parameter, two uses); "
        f"yours is another Parameter{' with the same values' if torch.equal(model.lm_head.weight, model.transformer.wte.weight) else ''}"
        f"\n  {likely(M['tied_weights_copied'])}"
    )
    assert "lm_head.bias" not in dict(model.named_parameters()), "GPT-2's LM head has no bias"


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_logits_loss_and_gradients(gpt2, checkpoints, name, padded):
    model, hf = pair(gpt2, checkpoints[name])
    ids, kwargs, real = batch(model.config, padded)
    labels = ids.masked_fill(~real, -100)
    out = model(ids, labels=labels, **kwargs)
    hf.zero_grad()
    expected = hf(ids, labels=labels, **kwargs)
    # Every position, padding included: the last padding position's logits predict the first
    # real token, whose label counts in the loss.
    with torch.no_grad():
        logits_mistakes = _model_mistakes(hf, ids, kwargs)
    assert_close(out.logits[real], expected.logits[real], name="logits (non-padded positions)", atol=ATOL,
                 mistakes={m: t[real] for m, t in logits_mistakes.items()},
                 hint="run exercises 1-8 first; then check wte + wpe, the blocks in order, ln_f, the tied head")
    assert_close(out.logits, expected.logits, name="logits (padding positions included)", atol=ATOL,
                 hint="a padding query sees no key: its attention output must be 0 (exercise 3), not a uniform "
                      "average over every key, later tokens' included")
    assert_close(out.loss, expected.loss, name="loss", atol=ATOL, mistakes=_loss_mistakes(out.loss, expected.logits, labels))
    out.loss.backward()
    expected.loss.backward()
    assert_grads_close(
        {n: p.grad for n, p in model.named_parameters()}, hf_grads_as_ours(hf), rtol=GRAD_RTOL,
        hint="gradients differ only on padded batches? Zero the pattern rows of queries that see no key, with "
             "masked_fill (exercise 3)",
    )
    hf.zero_grad()


def _model_mistakes(hf, ids, kwargs):
    """{mistake: the logits it gives}, from transformers' model run with that mistake."""
    ln_f, lm_head = hf.transformer.ln_f, hf.lm_head
    captured = []
    handle = ln_f.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    try:
        hf(ids, **kwargs)
    finally:
        handle.remove()
    mistakes = {M["no_final_ln"]: lm_head(captured[0])}
    if "position_ids" in kwargs:
        mistakes[M["position_ids_ignored"]] = hf(ids, attention_mask=kwargs["attention_mask"]).logits
    return mistakes


def _loss_mistakes(actual, logits, labels):
    """{mistake: the loss it gives} for the loss shift; each mistake in the ways it is written."""
    V = logits.shape[-1]
    ce = lambda lg, lb: F.cross_entropy(lg.reshape(-1, V), lb.reshape(-1), ignore_index=-100)  # noqa: E731
    return {
        M["labels_not_shifted"]: nearest(actual, ce(logits, labels), ce(logits[:, :-1], labels[:, :-1]),
                                         ce(logits[:, 1:], labels[:, 1:])),
        M["labels_shifted_wrong_way"]: ce(logits[:, 1:], labels[:, :-1]),
    }


@pytest.mark.exercise("model")
def test_hidden_states_and_attentions(gpt2, checkpoints):
    model, hf = pair(gpt2, checkpoints["deep_narrow_heads"])
    ids, kwargs, real = batch(model.config, padded=True, seed=1)
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_attentions=True, **kwargs)
        expected = hf(ids, output_hidden_states=True, **kwargs)
        # transformers' sdpa path returns no patterns: its eager path's, whose rows differ at padding queries only.
        eager_patterns = hf_gpt2(checkpoints["deep_narrow_heads"])(ids, output_attentions=True, **kwargs).attentions
    n = model.config.n_layer
    assert out.hidden_states is not None and len(out.hidden_states) == n + 1, (
        f"hidden_states should hold n_layer + 1 = {n + 1} tensors (the embeddings, then each block's output, "
        f"the last one after ln_f), got {None if out.hidden_states is None else len(out.hidden_states)}"
    )
    with torch.no_grad():
        raw_last = {}
        handle = hf.transformer.ln_f.register_forward_hook(lambda module, args, o: raw_last.setdefault("x", args[0]))
        try:
            hf(ids, **kwargs)
        finally:
            handle.remove()
    for i, (h, e) in enumerate(zip(out.hidden_states, expected.hidden_states)):
        assert_close(h, e, name=f"hidden_states[{i}]", atol=ATOL,
                     mistakes={M["hidden_states_before_ln_f"]: raw_last["x"]} if i == n else None,
                     hint="hidden_states[0] is the embedding output; the last entry is after ln_f")
    assert out.attentions is not None and len(out.attentions) == n, f"attentions should hold {n} tensors"
    keep = keep_mask(kwargs["attention_mask"], ids.shape[1], ids.shape[1])
    for i, (a, e) in enumerate(zip(out.attentions, eager_patterns)):
        assert_close(a, zero_blind_rows(e, keep), name=f"attentions[{i}]", atol=1e-6,
                     hint="each pattern is (B, nh, T, S); rows of padding queries (they see no key) are all 0")


@pytest.mark.exercise("model")
def test_output_fields(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(0))
    out = model(ids)
    assert out.loss is None and out.past_key_values is None and out.hidden_states is None and out.attentions is None, (
        "without labels, use_cache, output_hidden_states or output_attentions those fields are None"
    )
    assert torch.equal(out["logits"], out.logits) and torch.equal(out[0], out.logits)
    with_loss = model(ids, labels=ids)
    assert torch.equal(with_loss[0], with_loss.loss), "as in transformers, out[0] is the loss when there is one"


@pytest.mark.exercise("model")
def test_lm_loss(gpt2):
    from transformers.loss.loss_utils import ForCausalLMLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g)
    labels = torch.randint(0, 11, (3, 6), generator=g)
    labels[0, :2] = -100
    labels[2, 4] = -100
    actual = gpt2.lm_loss(logits, labels)
    mistakes = _loss_mistakes(actual, logits, labels)
    assert_close(actual, ForCausalLMLoss(logits, labels, vocab_size=11), name="lm_loss",
                 atol=1e-6, mistakes=mistakes, hint="cross_entropy(logits[:, :-1], labels[:, 1:], ignore_index=-100)")
    # transformers' Trainer passes the label count of the whole accumulated batch.
    assert_close(gpt2.lm_loss(logits, labels, 40), ForCausalLMLoss(logits, labels, vocab_size=11, num_items_in_batch=40),
                 name="lm_loss with num_items_in_batch=40", atol=1e-6,
                 hint="with num_items_in_batch: cross_entropy(..., reduction='sum') / num_items_in_batch")


@pytest.mark.solution_only
def test_untied_head_is_its_own_parameter(gpt2, checkpoints):
    model, hf = pair(gpt2, checkpoints["untied_erf_gelu_inverse_layer_scale"])
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert torch.equal(model.lm_head.weight, hf.lm_head.weight)


@pytest.mark.solution_only
def test_fresh_model_initialisation(gpt2):
    """GPT-2's init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), LN 1/0, biases 0."""
    cfg = gpt2.GPT2Config(vocab_size=1000, n_positions=64, n_embd=128, n_layer=8, n_head=4)
    torch.manual_seed(0)
    model = gpt2.GPT2LMHeadModel(cfg)
    params = dict(model.named_parameters())
    std = lambda n: float(params[n].detach().std())  # noqa: E731
    # Sample std of >= 64k draws: within 2% of the target.
    assert abs(std("transformer.wte.weight") / 0.02 - 1) < 0.02
    assert abs(std("transformer.h.0.attn.c_attn.weight") / 0.02 - 1) < 0.02
    assert abs(std("transformer.h.3.mlp.c_proj.weight") / (0.02 / 4) - 1) < 0.02
    assert torch.equal(params["transformer.h.0.ln_1.weight"], torch.ones(128))
    assert torch.equal(params["transformer.h.0.mlp.c_fc.bias"], torch.zeros(512))


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def base_model(gpt2, checkpoints):
    return pair(gpt2, checkpoints["base"])[0]


BAD_INPUTS = {
    "negative id": (lambda: dict(input_ids=torch.tensor([[1, -1]])), "input_ids"),
    "id == vocab_size": (lambda: dict(input_ids=torch.tensor([[1, 97]])), "input_ids"),
    "float ids": (lambda: dict(input_ids=torch.tensor([[1.0, 2.0]])), "input_ids"),
    "1-d ids": (lambda: dict(input_ids=torch.tensor([1, 2])), "input_ids"),
    "longer than n_positions": (lambda: dict(input_ids=torch.zeros(1, 41, dtype=torch.long)), "n_positions"),
    "mask wrong length": (lambda: dict(input_ids=torch.zeros(2, 3, dtype=torch.long),
                                       attention_mask=torch.ones(2, 4)), "attention_mask"),
    "mask wrong batch": (lambda: dict(input_ids=torch.zeros(2, 3, dtype=torch.long),
                                      attention_mask=torch.ones(1, 3)), "attention_mask"),
    "mask not 0/1": (lambda: dict(input_ids=torch.zeros(1, 3, dtype=torch.long),
                                  attention_mask=torch.tensor([[0.5, 1.0, 1.0]])), "attention_mask"),
    "complex mask": (lambda: dict(input_ids=torch.zeros(1, 2, dtype=torch.long),
                                  attention_mask=torch.ones(1, 2, dtype=torch.complex64)), "attention_mask"),
    "position past the table": (lambda: dict(input_ids=torch.zeros(1, 2, dtype=torch.long),
                                             position_ids=torch.tensor([[0, 40]])), "position_ids"),
    "position_ids wrong shape": (lambda: dict(input_ids=torch.zeros(1, 2, dtype=torch.long),
                                              position_ids=torch.tensor([[0, 1, 2]])), "position_ids"),
    "labels wrong shape": (lambda: dict(input_ids=torch.zeros(1, 2, dtype=torch.long),
                                        labels=torch.zeros(1, 3, dtype=torch.long)), "labels"),
    "label out of range": (lambda: dict(input_ids=torch.zeros(1, 2, dtype=torch.long),
                                        labels=torch.tensor([[0, 97]])), "labels"),
}


@pytest.mark.exercise("model")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(base_model, case):
    make, argument = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=argument):
        base_model(**make())


@pytest.mark.exercise("model")
def test_non_tensor_input_is_a_type_error(base_model):
    with pytest.raises(TypeError, match="input_ids"):
        base_model([[1, 2, 3]])
