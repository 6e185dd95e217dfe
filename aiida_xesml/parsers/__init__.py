"""Parsers of the plugin (entry point group ``aiida.parsers``)."""
