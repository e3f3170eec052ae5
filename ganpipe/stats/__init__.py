"""Statistics the stages share: clustering for style discovery, distribution metrics."""
