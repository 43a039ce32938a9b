"""PipelineSchedule: runs a pipeline on its slots, when new data lands, or by hand."""
