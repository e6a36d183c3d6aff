"""Start the app from the command line: config, options, logging, run."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from cfm_tui.config import ChatConfig, config_path, data_dir


def run_chat(*, server: str | None, name: str | None, status: str | None,
             display: str | None, invite: str | None = None,
             token_file: Path | None = None) -> int:
    from cfm_tui.app import ChatApp, ChatOptions

    path = config_path()
    config, warning = ChatConfig.load(path)
    if warning:
        print(f"cfm chat: warning: {warning}", file=sys.stderr)
    _log_to_file()
    options = ChatOptions(
        server=server or config.server,
        name=name,
        display=display,
        invite=invite,
        token_file=token_file,
        status=status or config.status or "online",
        data_dir=data_dir(),
        config_path=path,
        config=config,
        config_warning=warning,
    )
    ChatApp(options).run()
    return 0


def _log_to_file() -> None:
    """Logs go to a file: the terminal belongs to the app."""
    log_dir = data_dir()
    try:
        # Private: the built-in server keeps every message in this directory too, and
        # warns when it is open to other users.
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_file = log_dir / "chat.log"
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
