"""The one error of dataset loading, in a module of its own so that the loaders of each format
(``workers.data``, ``workers.cifar``) share it without importing each other."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset cannot be loaded: unknown name, missing or malformed files. The message names the file."""
