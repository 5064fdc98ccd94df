"""Launchers: start nameserver, master and workers as processes. Nothing imports this package."""
