"""The pipeline stages: each reads from the run store and writes its results there."""
