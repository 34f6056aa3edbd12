"""``python -m cnnlab``, which torchrun launches:
``torchrun --nproc_per_node=2 -m cnnlab train``.
"""

from .cli import entry

entry()
