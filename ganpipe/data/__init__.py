"""Reading a dataset version back: sources, decoding, images, the demo collection."""
