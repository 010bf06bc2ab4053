"""``python -m mango.cli`` = the ``mango`` command."""
from .main import app

app(prog_name="mango")
