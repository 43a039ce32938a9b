"""The kopf operator for BatchInferenceJob and PipelineSchedule."""
