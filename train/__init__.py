"""Training: one trainer (`trainer.train`) for the demo model, `structbert-lite finetune` and the distilled student.

    data.py      labelled/unlabelled text sets from CSV/TSV/JSONL/Parquet, label ids via the checkpoint's id2label
    batching.py  tokenized sets, length-bucketed seeded batches, dynamic padding
    trainer.py   the loop: AdamW + warmup/decay, early stopping on held-out accuracy, best epoch kept, a loss hook
    state.py     per-epoch resumable state, written atomically, loadable with ``weights_only=True``
    curves.py    the training-curve PNG
    settings.py  the ``finetune:`` YAML section (pydantic, unknown keys are errors)
    finetune.py  the `finetune` command: source -> refusals -> train -> report -> checkpoint published atomically
"""
