"""The domain's seams: connections only through ``ports.Connection``, durable writes only
through ``writes.Writes``.

The domain modules never import the session, the server or the WebSocket library (so a
cluster node can drive the same rules), ``Session`` has every member the protocol names,
and no module but ``writes`` calls a write method of the store.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cfm_server.domain.ports import Connection
from cfm_server.session import Session

DOMAIN = Path(__file__).resolve().parents[2] / "cfm_server" / "domain"
FORBIDDEN = ("cfm_server.session", "cfm_server.server", "cfm_server.wsconn", "websockets")
STORE_WRITES = frozenset({"append", "put_user", "put_room", "add_member", "remove_member",
                          "put_contact", "set_read", "count_invite_use", "delete_before"})


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = sorted(DOMAIN.glob("*.py"))


def test_the_domain_package_has_its_modules() -> None:
    assert {p.stem for p in MODULES} >= {
        "signin", "presence", "rooms", "messages", "contacts", "delivery", "ports", "writes"}


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_a_domain_module_never_imports_the_connection_layer(path: Path) -> None:
    bad = {name for name in imported_modules(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_session_has_every_member_of_the_connection_protocol() -> None:
    members = set(Connection.__annotations__) | {
        name for name, value in vars(Connection).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    assert members >= {"id", "ip", "user", "quiet", "limits", "send", "send_framed", "answer"}
    missing = {name for name in members
               if name not in Session.__slots__ and not hasattr(Session, name)}
    assert not missing, f"Session lacks {sorted(missing)}"


def store_writes(path: Path) -> list[str]:
    """Calls of a store write method on something named ``store`` (``x.store.put_user``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in STORE_WRITES:
            receiver = node.func.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else \
                receiver.id if isinstance(receiver, ast.Name) else ""
            if name in ("store", "_store"):
                found.append(f"line {node.lineno}: {name}.{node.func.attr}")
    return found


def test_only_writes_calls_the_store_s_write_methods() -> None:
    assert store_writes(DOMAIN / "writes.py"), "the check finds nothing: it is broken"
    others = {p.name: store_writes(p) for p in MODULES if p.name != "writes.py"}
    others["hub.py"] = store_writes(DOMAIN.parent / "hub.py")
    assert not {name: calls for name, calls in others.items() if calls}
