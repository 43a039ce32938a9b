"""BatchInferenceJob: plan, one Indexed scoring Job, counts against the thresholds, a merge Job."""
