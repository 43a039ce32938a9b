"""The data plane: spec, planning, worker pool, outputs, merge and the local CLI."""
