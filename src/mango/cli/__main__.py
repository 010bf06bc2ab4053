"""``python -m mango.cli`` = the ``mango`` command."""
from . import main

main()
