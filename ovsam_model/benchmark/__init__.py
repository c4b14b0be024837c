"""`ovsam-model bench`: speed and memory of OV-SAM and of the SAM + CLIP baseline, as printed numbers.

`run` drives a benchmark, `baseline` builds and times the naive pipeline, `timing` holds the
stopwatch, peak-memory probe and machine description, `report` the targets and ratios, and
`statistics` the percentile every benchmark and soak of the project reports.
"""
