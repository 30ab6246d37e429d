"""validate/: decide what gets published.

One concept per module: `eval_data` (eval sets, labels through the checkpoint's id2label), `accuracy` (drift vs
the baseline), `torch_baseline` (the PyTorch FP32 reference), `batch_invariance`, `length_buckets`, `speed`
(latency, throughput, memory through the shared measurement core, `structbert_lite.measure`), `gate`, `report`,
and `stage` (the sequence: invariance → eval logits → drift → buckets → speed → gate). Publishing is `publish/`.
"""
