"""Benchmarks: each part measures imagerepo against a baseline in the same run."""
