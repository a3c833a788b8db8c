"""`mmedge bench`: stage timings of bundles, each measured in its own worker process.

settings.py  what to measure (typed, validated; also the worker's command line)
worker.py    the worker: `python -m mmedge.runtime.bench.worker BUNDLE ...` prints one JSON object
measure.py   the measurement of one bundle inside the worker (through `Pipeline.generate`)
machine.py   what the worker ran on (CPU, OS, versions, llama.cpp's build flags)
stats.py     median, p90, mean, sd, min, max of repeated measurements
runner.py    the parent side: checks, one worker per bundle, progress, the report
report.py    the JSON report (docs/bench.schema.json) and the terminal table
plot.py      the optional figure (matplotlib, the `bench` extra)
photo.py     the default input: a fixed photo-like image made by code

Torch-free like the rest of the runtime; the worker needs only the runtime install, so the same
command can later run on a remote device.
"""
