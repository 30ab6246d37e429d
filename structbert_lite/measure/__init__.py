"""The one measurement core of validate and bench: fresh process per contender, same inputs, same readings.

    machine.py      CPU model/flags/cores/load, library versions, VmHWM, run-queue wait and steal
    feeds.py        synthetic exact-length feeds, length-bucketed real-text feeds, calibration feeds
    contenders.py   ContenderSpec (torch checkpoint, onnxruntime, OpenVINO, a variant folder) and its loader
    plan.py         MeasurePlan: grid, repeats, throughput batching, rounds, budgets
    worker.py       one job in a fresh process: cold start, latency grid, throughput, peak RSS, contention
    runner.py       spawn with one thread budget and environment, rotated rounds, medians, re-measure
    trust.py        is it trustworthy? contention and implausible figures → verified or the reasons

Torch-free at import (nothing is imported here); the worker imports only the contender's own runtime.
"""
