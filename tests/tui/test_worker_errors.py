"""A failure inside one of the app's workers (a request, an outcome being shown) is
logged with its traceback and told to the user, never dropped: the messenger goes on."""

from __future__ import annotations

import logging

from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from cfm_tui.outcome import Outcome
from cfm_tui.state import ChatState
from tests.tui.helpers import wait_until


async def test_a_failing_request_is_logged_and_said(tmp_path, caplog):
    app = ChatApp(ChatOptions(config=ChatConfig(idle_minutes=0), animations=False,
                              data_dir=tmp_path), state=ChatState("alice"))

    async def broken() -> Outcome:
        raise RuntimeError("the request broke")

    async def fine() -> Outcome:
        return Outcome()

    caplog.set_level(logging.ERROR, logger="cfm_tui.app")
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.main is not None, "the main window")
        app.show_now(Outcome(jobs=[broken, fine]))
        await wait_until(pilot, lambda: any("the request broke" in n.message
                                            for n in app._notifications), "the error said")
        toast = next(n for n in app._notifications if "the request broke" in n.message)
        assert toast.severity == "error"
        assert str(tmp_path / "chat.log") in toast.message
        assert app.is_running  # one failed request does not end the messenger
    failed = [r for r in caplog.records if r.exc_info is not None]
    assert [str(r.exc_info[1]) for r in failed] == ["the request broke"]
