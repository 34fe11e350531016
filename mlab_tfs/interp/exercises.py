"""The interpretability exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "interp"

EXERCISES = [
    Exercise("residual_stream", "The residual stream", "1-the-residual-stream", difficulty=1, importance=5,
             minutes=30),
    Exercise("head_outputs", "Each head's output", "2-each-heads-output", difficulty=2, importance=4, minutes=30),
    Exercise("direct_logit_attribution", "Direct logit attribution", "3-direct-logit-attribution", difficulty=3,
             importance=5, minutes=50),
    Exercise("attention_plots", "Attention patterns as pictures", "4-attention-patterns-as-pictures", difficulty=1,
             importance=3, minutes=25),
    Exercise("induction_scores", "Induction scores", "5-induction-scores", difficulty=2, importance=5, minutes=35),
    Exercise("ablation", "Ablating heads", "6-ablating-heads", difficulty=2, importance=4, minutes=35),
    Exercise("activation_patching", "Activation patching", "7-activation-patching", difficulty=3, importance=5,
             minutes=60),
    Exercise("logit_lens", "The logit lens", "8-the-logit-lens", difficulty=1, importance=4, minutes=20),
]
