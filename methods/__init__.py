"""Editing method adapters: one file per method, registered by name in ``benchmark.registry.METHODS``."""
