"""Errors, atomic writes, plugin loading, declared options and the distributed world: what every room uses."""
