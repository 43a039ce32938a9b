"""The data plane: spec, planning, worker pool, outputs, merge and local mode (no Kubernetes, no kopf)."""
