"""Prefect flows that chain ganpipe's stages; see flows/pipeline.py."""
