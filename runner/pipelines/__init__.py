"""Pipelines (PipelineRun, Component): the API and the pure engine that local mode and the operator drive.

- `spec`: load and check a PipelineRun (every problem at once).
- `component`: load and check a component; type-check the inputs a step gives it.
- `expressions`: find, check and substitute `${{...}}` expressions.
- `dag`: what to start, what to skip, and the run's phase.
- `reuse`: step fingerprints and the reuse index in the workdir.
- `batch`, `values`, `uris`: a step's BatchInferenceJob spec, typed values, relative URIs.
"""
