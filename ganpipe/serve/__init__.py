"""``ganpipe serve``: generation on demand over HTTP, batches and curation, from the run store."""
