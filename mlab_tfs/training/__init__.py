"""Training: our models in transformers' Trainer, our own loop (``mlab-tfs train``), several
processes (DDP or FSDP2), and the small Shakespeare GPT-2 the course trains itself (``mlab-tfs sample``),
or a Llama of the same size (``llama_course.toml``).

See GUIDE.md. The loop lives in ``loop.py``, the data pipeline in ``data.py`` and the
helpers that put our models into transformers' Trainer in ``hf.py``.
"""
