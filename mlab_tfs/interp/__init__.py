"""Looking inside the models you built: caches, attribution, attention pictures, induction heads,
ablation, activation patching and the logit lens. ``mlab_tfs.interp`` is the solution; your
version lives in ``student.py``."""

from mlab_tfs.interp.solution import (
    ablate_heads,
    accumulated_resid,
    attention_html,
    direct_logit_attribution,
    head_outputs,
    induction_scores,
    logit_diff_direction,
    logit_diff_metric,
    logit_lens,
    patch_heads,
    patch_residual,
    per_token_loss,
    plot_attention,
    plot_patching,
    recovered_fraction,
    repeated_tokens,
    residual_components,
)

__all__ = [
    "accumulated_resid", "residual_components", "head_outputs", "logit_diff_direction", "direct_logit_attribution",
    "plot_attention", "attention_html", "repeated_tokens", "induction_scores", "per_token_loss", "ablate_heads",
    "patch_residual", "patch_heads", "logit_diff_metric", "recovered_fraction", "plot_patching", "logit_lens",
]
