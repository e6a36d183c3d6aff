"""``/save``: all of a conversation (older pages fetched first) written to a file."""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Protocol

from cfm_common.errors import ClientError
from cfm_tui import export
from cfm_tui.message_actions import Host as _Host
from cfm_tui.outcome import Outcome


class Host(_Host, Protocol):
    tz: tzinfo | None

log = logging.getLogger(__name__)
HISTORY_PAGE = 50


async def save(ctl: Host, room: str, file: str) -> Outcome:
    state, session = ctl.state, ctl.session
    conv = state.conversation(room)
    while session is not None and conv.can_load_older:
        try:
            page = await session.client.history(room, before=conv.oldest_seq,
                                                limit=HISTORY_PAGE)
        except ClientError as exc:
            log.info("history of %s for /save failed: %s", room, exc)
            break
        if not conv.add_history(page.msgs, page.more) and page.more:
            break  # nothing new although the server says there is more: stop
    now = datetime.now(ctl.tz)
    path = Path(file).expanduser() if file else Path.cwd() / export.default_file_name(
        room, now)
    try:
        export.write(path, export.conversation_text(room, state, ctl.tz, now))
    except FileExistsError:
        return ctl.note(room, f"{path} exists already: /save another name, or remove it.")
    except OSError as exc:
        return ctl.note(room, f"Could not save to {path}: {exc.strerror or exc}")
    return ctl.note(room, f"Saved this conversation ({len(conv.messages)} messages) to "
                           f"{path}.")
