"""parallelrun: batch inference on Kubernetes or on one machine."""
