"""References of the interpretability tests, written independently of the solution: from
transformers' models (hidden states, attentions, weights) and by hand, each with the variants
that the catalogued mistakes give, so that a failure can name its likely cause."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# GPT-2 tied (2 layers, 4 heads), GPT-2 untied with one head, Llama with grouped-query
# attention (untied), a tied Llama with attention biases (3 layers, 3 heads), a Qwen3 (QK-norm,
# head_dim 12 while C / nh = 8).
MODELS = ("gpt2/base", "gpt2/untied_erf_gelu_inverse_layer_scale", "llama/gqa", "llama/tied_bias", "qwen3/qk_norm")
GPT2, GPT2_UNTIED, LLAMA, LLAMA_BIAS, QWEN3 = MODELS


def random_ids(vocab_size: int, shape=(2, 7), seed=0) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def is_gpt2(model) -> bool:
    return hasattr(model, "transformer")


def n_layers(model) -> int:
    return model.config.n_layer if is_gpt2(model) else model.config.num_hidden_layers


def n_heads(model) -> int:
    return model.config.n_head if is_gpt2(model) else model.config.num_attention_heads


def o_proj(hf, layer: int) -> torch.nn.Linear | torch.nn.Module:
    """transformers' output projection of a block: GPT-2's Conv1D c_proj (weight (nh*hs, C)),
    Llama's Linear o_proj (weight (C, nh*hd))."""
    return hf.transformer.h[layer].attn.c_proj if is_gpt2(hf) else hf.model.layers[layer].self_attn.o_proj


def o_weight(hf, layer: int) -> torch.Tensor:
    """The output projection as (nh*hs, C): input features on the rows."""
    proj = o_proj(hf, layer)
    return proj.weight.detach() if is_gpt2(hf) else proj.weight.detach().T


def final_norm(hf):
    return hf.transformer.ln_f if is_gpt2(hf) else hf.model.norm


def hf_run(hf, ids, **kwargs):
    """transformers' forward with hidden states and attentions, plus what forward hooks on its
    modules saw: "final" the stream the final norm reads (B, T, C), "z_{i}" the output
    projection's input (B, T, nh * hs), "attn_{i}" its output, "mlp_{i}" the MLP's output."""
    seen, handles = {}, []

    def keep(key, what):
        def hook(module, args, output):
            seen[key] = (args[0] if what == "input" else output).detach()
        return hook

    handles.append(final_norm(hf).register_forward_hook(keep("final", "input")))
    for i in range(n_layers(hf)):
        handles.append(o_proj(hf, i).register_forward_hook(keep(f"z_{i}", "input")))
        handles.append(o_proj(hf, i).register_forward_hook(keep(f"attn_{i}", "output")))
        mlp = hf.transformer.h[i].mlp if is_gpt2(hf) else hf.model.layers[i].mlp
        handles.append(mlp.register_forward_hook(keep(f"mlp_{i}", "output")))
    try:
        with torch.no_grad():
            out = hf(ids, output_hidden_states=True, output_attentions=True, **kwargs)
    finally:
        for h in handles:
            h.remove()
    out.seen = seen
    return out


def frozen_norm(hf, x: torch.Tensor, scale: torch.Tensor, centre: bool = True, divide: bool = True,
                weight: bool = True) -> torch.Tensor:
    """transformers' final norm applied to x with the statistics (scale) of another stream:
    the linear map that direct logit attribution uses (variants: the catalogued mistakes)."""
    norm = final_norm(hf)
    if centre and is_gpt2(hf):
        x = x - x.mean(-1, keepdim=True)
    if divide:
        x = x / scale
    if weight:
        x = x * norm.weight.detach()
    return x


def logit_diff(hf, correct: int, wrong: int) -> torch.Tensor:
    W_U = hf.lm_head.weight.detach()  # (V, C): transformers' head, tied or not
    return W_U[correct] - W_U[wrong]


def dla_reference(hf, ids, correct: int, wrong: int, pos: int = -1, **variant) -> dict[str, torch.Tensor]:
    """Direct logit attribution from transformers' run and weights: each head's output is its
    slice of the output projection's input times its rows of the weight; the final norm's
    scale is recomputed from the stream it read (variants: the catalogued mistakes)."""
    bias_divided = variant.pop("bias_divided", False)  # the mistake of dividing the norm's bias by the scale
    out = hf_run(hf, ids)
    d = logit_diff(hf, correct, wrong)
    B = ids.shape[0]
    last, norm = out.seen["final"], final_norm(hf)
    if is_gpt2(hf):
        scale = torch.sqrt(last.var(-1, unbiased=False, keepdim=True) + norm.eps)
    else:
        scale = torch.sqrt(last.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    s = scale[:, pos]  # (B, 1)

    def share(x):  # (B, ..., C) at pos -> (B, ...)
        sc = s.reshape(B, *([1] * (x.dim() - 1)))
        return (frozen_norm(hf, x, sc, **variant) * d).sum(-1)

    heads, mlps, biases = [], [], torch.zeros(B)
    for layer in range(n_layers(hf)):
        per_head = split_heads(hf, out, layer)  # (B, T, nh, C)
        heads.append(share(per_head[:, pos]))  # (B, nh)
        bias = o_proj(hf, layer).bias
        if bias is not None:
            biases = biases + share(bias.detach().expand(B, -1))
        mlps.append(share(out.seen[f"mlp_{layer}"][:, pos]))
    nb = getattr(norm, "bias", None)
    if nb is not None:
        biases = biases + (nb.detach() * d).sum() / (s[:, 0] if bias_divided else 1)
    logits = out.logits[:, pos]
    return {"heads": torch.stack(heads, 1).mean(0), "mlps": torch.stack(mlps, 1).mean(0),
            "embed": share(_embeddings(hf, ids)[:, pos]).mean(0), "biases": biases.mean(0),
            "total": (logits[:, correct] - logits[:, wrong]).mean(0)}


def split_heads(hf, out, layer: int, transposed: bool = False, interleaved: bool = False) -> torch.Tensor:
    """Each head's write into the stream at a block, (B, T, nh, C), from transformers' run:
    head h's slice of the output projection's input times the projection's rows for it.
    transposed: the mistake of reading the (C, nh*hs) weight as (nh, hs, C) without a transpose;
    interleaved: the mistake of splitting the weight's nh * hs rows as (hs, nh): head h's every nh-th."""
    z = out.seen[f"z_{layer}"]  # (B, T, nh * hs)
    nh = n_heads(hf)
    hs = z.shape[-1] // nh
    W = o_weight(hf, layer)  # (nh * hs, C)
    if transposed:
        W = W.T.reshape(nh * hs, -1)
    if interleaved:
        return torch.stack([z[..., h * hs:(h + 1) * hs] @ W[h::nh] for h in range(nh)], 2)  # every nh-th row
    return torch.stack([z[..., h * hs:(h + 1) * hs] @ W[h * hs:(h + 1) * hs] for h in range(nh)], 2)


def _embeddings(hf, ids) -> torch.Tensor:
    with torch.no_grad():
        if is_gpt2(hf):
            T = ids.shape[1]
            return hf.transformer.wte(ids) + hf.transformer.wpe(torch.arange(T))[None]
        return hf.model.embed_tokens(ids)


def lens_reference(hf, ids, skip_norm: bool = False, frozen: bool = False) -> torch.Tensor:
    """The logit lens from transformers: every block's input (hidden_states[:-1]) and the final
    stream, through transformers' final norm and head (variants: the catalogued mistakes)."""
    out = hf_run(hf, ids)
    streams = torch.stack([*out.hidden_states[:-1], out.seen["final"]])  # (L + 1, B, T, C)
    with torch.no_grad():
        if skip_norm:
            return hf.lm_head(streams)
        if frozen:
            last = streams[-1]
            norm = final_norm(hf)
            if is_gpt2(hf):
                scale = torch.sqrt(last.var(-1, unbiased=False, keepdim=True) + norm.eps)
                normed = frozen_norm(hf, streams, scale) + norm.bias
            else:
                normed = frozen_norm(hf, streams, torch.sqrt(last.pow(2).mean(-1, keepdim=True)
                                                           + norm.variance_epsilon))
            return hf.lm_head(normed)
        return hf.lm_head(final_norm(hf)(streams))


def token_loss(logits: torch.Tensor, ids: torch.Tensor, shift: bool = True,
               shift_logits: bool = False) -> torch.Tensor:
    """Next-token cross-entropy per position from logits (B, T, V): (B, T - 1) (variants: the
    targets not shifted; the logits shifted instead, logits[:, 1:] against tokens[:, 1:])."""
    targets = ids[:, 1:] if shift else ids[:, :-1]
    scored = logits[:, 1:] if shift_logits else logits[:, :-1]
    return F.cross_entropy(scored.transpose(1, 2), targets, reduction="none")
