"""Runs the whole imagerepo stack on loopback as local processes (what `make run` starts)."""
