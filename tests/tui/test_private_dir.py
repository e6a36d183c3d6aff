"""`cfm chat` keeps its directory private: the built-in server stores every message there."""

from __future__ import annotations

import logging
import os
import stat

from cfm_tui import launch
from cfm_tui.config import data_dir


def test_the_chat_directory_and_its_log_are_private_whatever_the_umask() -> None:
    old = os.umask(0o022)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        launch._log_to_file()
    finally:
        os.umask(old)
        for handler in root.handlers[len(before):]:
            root.removeHandler(handler)
            handler.close()
    directory = data_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "chat.log").stat().st_mode) == 0o600
