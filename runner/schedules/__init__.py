"""PipelineSchedule: the spec, run names, the pure policy engine, data arrival, local mode.

    spec       the resource → ScheduleSpec, every invalid field with its fix
    runs       run names (`<schedule>-<yyyymmddhhmm>`) and the PipelineRun a firing creates (pure)
    policy     given what exists and the time: which runs to create and delete, what was missed (pure)
    arrival    data arrival: new, settled files since the watermark, and the manifest
    local      `parallelrun schedule run`: the same engine in the foreground, state in the workdir
"""
