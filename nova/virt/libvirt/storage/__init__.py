"""Thin wrappers over the storage tools (LVM, ploop): one module per tool,
each call one command, its failures typed."""
