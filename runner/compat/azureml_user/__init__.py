"""Azure ML's `azureml_user` package, as ParallelRunStep scripts import it (see runner/compat)."""
