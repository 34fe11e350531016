"""Looking inside the models you built: caches, attribution, patching, induction heads."""

from mlab_tfs.interp.solution import attention_html, plot_attention

__all__ = ["attention_html", "plot_attention"]
