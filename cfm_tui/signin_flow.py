"""Signing in: from the sign-in form to a connected :class:`ChatSession`, or to a
:class:`SignInError` saying what went wrong and which field to fix.

The server is the one typed (several, comma-separated, are the nodes of one cluster) or,
with none, the embedded one this app starts; its tokens are kept per handle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cfm_common import rules
from cfm_common.errors import ClientError, ConnectFailed
from cfm_common.tokens import default_token_file
from cfm_tui.config import ChatConfig, data_dir
from cfm_tui.embedded import EmbeddedServer, EmbeddedServerBusy
from cfm_tui.screens.signin import SignInError, SignInForm
from cfm_tui.session import (
    ChatSession,
    SignIn,
    bad_token_text,
    connect_error,
    friendly_error,
    is_lookalike_refusal,
    name_taken_text,
    server_urls,
    sign_in_refusal,
)

log = logging.getLogger(__name__)

# The refusals that are about the handle typed: shown under the name field.
NAME_ERRORS = (rules.ErrorCode.NAME_TAKEN, rules.ErrorCode.BAD_TOKEN,
               rules.ErrorCode.NAME_INVALID)


@dataclass
class ChatOptions:
    """How ``cfm chat`` was started (the CLI maps flags and the config onto this)."""

    server: str | None = None
    name: str | None = None
    display: str | None = None
    status: str = "online"
    # --invite: for this sign-in only (the SDK sends it while it has no token), never saved.
    invite: str | None = None
    # --token-file: the token file for this run's sign-ins (e.g. the one the operator's
    # `cfm admin add-user` wrote); the SDK writes a refreshed token back to it. Not saved.
    token_file: Path | None = None
    # Where the embedded server keeps its data (and this app its tokens for it).
    data_dir: Path = field(default_factory=data_dir)
    config_path: Path | None = None
    config: ChatConfig = field(default_factory=ChatConfig)
    config_warning: str | None = None
    animations: bool = True


@dataclass
class SignedIn:
    session: ChatSession
    welcome: Any
    form: SignInForm  # as signed in with: the server completed to its URL(s)


async def sign_in(form: SignInForm, options: ChatOptions,
                  embedded: EmbeddedServer) -> SignedIn | SignInError:
    """Connect with ``form``; the session, or why not."""
    urls: list[str] = []
    if form.server:
        try:  # "localhost:1863" means ws://localhost:1863/ws; commas: several nodes
            urls = server_urls(form.server)
        except ValueError as exc:
            return SignInError(str(exc), "server")
        form = replace(form, server=",".join(urls))
    token_file: Path | None = None
    try:
        if urls:
            url = ",".join(urls)
        else:
            url = await embedded.start()
            # The embedded server's port changes every run: keep its tokens by name.
            token_file = (options.data_dir / "embedded" / "tokens"
                          / f"{rules.normalize_name(form.name)}.token")
    except EmbeddedServerBusy as exc:
        log.info("embedded server: %s", exc.__cause__)
        return SignInError(str(exc))
    except Exception as exc:  # the embedded server could not start
        log.exception("embedded server failed")
        return SignInError(f"Could not start the local server: {exc}")
    if options.token_file is not None:
        token_file = options.token_file
    session = ChatSession(urls or url, SignIn(form.name, form.display or None, form.status,
                                              None, form.server, form.invite),
                          token_file=token_file)
    try:
        welcome = await session.connect()
    except ConnectFailed as exc:
        return SignInError(connect_error(exc, url), "server" if form.server else None)
    except ClientError as exc:
        if exc.code == rules.ErrorCode.FORBIDDEN:  # registration: closed, or by invite
            return SignInError(*sign_in_refusal(exc))
        where = "name" if exc.code in NAME_ERRORS else None
        if exc.code == rules.ErrorCode.NAME_TAKEN and not is_lookalike_refusal(exc):
            return SignInError(name_taken_text(
                form.name, token_file or default_token_file(url, form.name)), where)
        if exc.code == rules.ErrorCode.BAD_TOKEN:  # a token was sent: say which file
            return SignInError(bad_token_text(
                form.name, token_file or default_token_file(url, form.name)), where)
        return SignInError(friendly_error(exc, form.name), where)
    return SignedIn(session, welcome, form)
