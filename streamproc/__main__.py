"""``python -m streamproc`` is the ``streamproc`` command."""

from streamproc.cli import main

main()
