"""Architectures; importing this package registers every one of them."""

from fertools.architectures import default, seeds, transfer  # noqa: F401
