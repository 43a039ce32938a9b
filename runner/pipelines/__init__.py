"""Pipelines (PipelineRun, Component): the API and the pure engine that local mode and the operator drive.

- `spec`: load and check a PipelineRun (every problem at once).
- `component`: load and check a component; type-check the inputs a step gives it.
- `expressions`: find, check and substitute `${{...}}` expressions.
- `dag`: what to start, what to skip, and the run's phase.
- `reuse`: step fingerprints and the reuse index in the workdir.
- `batch`, `values`, `uris`: a step's BatchInferenceJob spec, typed values, relative URIs.
- `resolve`, `resolved`: a step made concrete when it starts (outputs placed, expressions
  substituted, fingerprint taken), and that ResolvedStep with its JSON form.
- `owners`: which execution last wrote each output place; the whole reuse decision.
- `steprun`: one container or component step from its JSON (`python -m parallelrun.runner step`).
- `sources`, `local`: component files and code digests off the cluster; local mode's driver
  (`parallelrun run pipeline.yaml`, `run_pipeline`).
"""
