"""validate/: decide what gets published.

One concept per module: `eval_data` (eval sets), `accuracy` (drift vs the baseline), `torch_baseline`
(the PyTorch FP32 reference), `speed` + `probe` (latency, throughput, fresh-process memory), `gate`,
`report`, `model_card`, `stage` (measure → gate → publish → report) and `verify`.
Nothing is imported here: `probe` must start without torch.
"""
