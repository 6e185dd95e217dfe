"""Calcfunctions: each wraps one core function so that the step is recorded in the provenance graph."""
