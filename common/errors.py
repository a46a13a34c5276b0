"""Errors that the command line reports as one line with a fixed exit code."""

from __future__ import annotations


class PhotodragError(Exception):
    """Base class: `exit_code` 2 for bad usage or input, 1 for internal failures."""

    exit_code = 1


class UsageError(PhotodragError):
    """The user's input (file, option, point, recipe) cannot be used."""

    exit_code = 2


class MissingWeightsError(UsageError):
    """A pretrained file is not on disk and could not be fetched."""


class CheckpointError(UsageError):
    """A checkpoint file is corrupt, unsafe, or does not fit what it should be."""


class DownloadError(PhotodragError):
    """A download failed (network, server, size or hash)."""

    exit_code = 2


class BusyError(UsageError):
    """A run folder or cache entry is in use by another photodrag process (and we were told not to wait)."""


class DiskFullError(PhotodragError):
    """A write failed because its disk (or quota) is full: the message names the path and the free space."""

    exit_code = 1
