"""``python -m cfm_server``: the same as ``cfm serve``."""

from cfm_server.cli import app

if __name__ == "__main__":
    app(prog_name="cfm serve")
