"""Benchmarks: one subpackage per benchmark (data, model, tasks)."""
