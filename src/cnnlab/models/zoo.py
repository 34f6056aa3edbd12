"""Imports every model family so their builders register. Add new family files to the list."""

from . import (  # noqa: F401
    alexnet,
    densenet,
    fractalnet,
    googlenet,
    preact_resnet,
    research,
    resnet,
    robust,
    ror,
    simple,
    speedrun,
    vgg,
    wide_resnet,
)
