"""Architectures; importing this package registers every one of them."""

from fertools.architectures import default, ensemble, resnet, seeds, transfer  # noqa: F401
