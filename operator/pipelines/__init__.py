"""PipelineRun: a DAG of steps, each a child the operator knows how to run, unchanged steps reused."""
