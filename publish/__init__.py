"""publish/: make a run's passing variants appear together, traceable and verifiable.

`output_set` (lock, run folders, one atomic symlink switch), `publisher` (variant folders, manifests, run
manifest, reports into the run folder), `model_card` (Hub-ready README.md per variant), `verify` (a folder, or a
whole published set, against its manifests).
"""
