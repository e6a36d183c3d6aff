"""One ``ServerConfig`` for the relay; the CLI only maps flags onto it.

Precedence, lowest first: the defaults below < a TOML file (``--config``, else
``<user config dir>/cfm/server.toml`` if it exists) < ``CFM_<FIELD>`` environment
variables < command-line flags. Every field is documented in ``docs/server.md``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfm_common import rules
from cfm_server.ai import AIConfig, AIConfigError
from cfm_server.errors import ConfigError

ENV_PREFIX = "CFM_"
# Frame kinds with a per-session token bucket: (rate per second, burst).
RATE_KINDS = ("say", "nudge", "typing", "presence", "join", "history", "contact", "search")
# Buckets per user (every session of the user spends from the same one; admission.py).
# welcome.limits.user_rates tells each, named without the "user_".
USER_RATE_KINDS = ("user_say", "user_stranger", "user_contact", "user_room", "user_typing",
                   "user_presence", "user_search", "user_text", "user_read", "user_signin")
STORES = ("sqlite", "memory")
REGISTRATIONS = ("open", "invite", "closed")
# redis+cluster:// and rediss+cluster://: a node of a Redis Cluster (cluster/rediscluster.py)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
SHUTDOWN_CODES = (rules.CloseCode.GOING_AWAY, rules.CloseCode.SERVICE_RESTART)


@dataclass(slots=True)
class ServerConfig:
    # --- where ---------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = rules.DEFAULT_PORT
    data_dir: Path | None = None  # None: platformdirs.user_data_dir("cfm")
    store: str = "sqlite"  # "sqlite" | "memory"
    sqlite_synchronous: str = "normal"
    commit_interval_ms: float = 0.0  # group-commit window of the SQLite store
    # The SQLite store's search index (a file beside the database, kept by a process);
    # off: search answers forbidden, and nothing is indexed.
    search_index: bool = True
    # Start-up refuses a data directory on a disk with less free space than this (MiB);
    # /readyz reports "not ready" below it. 0 turns the check off.
    min_free_mb: float = 2.0
    # TLS: with both set the server speaks wss:// and https:// (PEM files).
    tls_cert: Path | None = None  # certificate chain
    tls_key: Path | None = None  # its private key
    # Reverse proxies whose X-Forwarded-For names the client (addresses or networks).
    trusted_proxies: list[str] = field(default_factory=list)
    # "host:port" serving /metrics instead of the public port (which then answers 404).
    metrics_listen: str = ""
    # The URL people type to reach the server (behind a proxy, not the listen address):
    # for the banner and cfm admin's instructions. Empty: the listen address.
    public_url: str = ""
    # Cluster mode (docs/cluster.md): one node of many over this Redis
    # (redis://HOST:PORT/DB, rediss://…, unix://…). Empty: a single node on its store.
    redis_url: str = ""
    # This node's name in the cluster (presence, origins). Empty: <hostname>-<port>
    # (with --port 0: <hostname>-<random>, a new node at each start).
    node_id: str = ""
    # Start on a Redis whose maxmemory-policy may evict keys (stored messages with them);
    # without it such a Redis is refused (docs/cluster.md, "Redis requirements").
    allow_redis_eviction: bool = False
    # Seconds from a node's death (SIGKILL, power) to its users shown offline elsewhere.
    presence_expiry: float = 15.0
    # Bytes of Redis the shared records' log may hold (docs/cluster.md, "Sizing Redis"):
    # a node cut off through more changes than that reloads the records instead.
    state_log_bytes: int = 8 << 20

    # --- who -----------------------------------------------------------------------
    # Who may claim a new handle: "open" (anyone), "invite" (with an operator's code from
    # `cfm admin invite`), "closed" (nobody: operators make accounts, `cfm admin add-user`).
    registration: str = "open"
    ai_enabled: bool = True
    # Cluster mode: the AI contacts run on the node holding a lease in Redis; another node
    # takes them over within this many seconds of the holder's death.
    ai_lease_ttl: float = 10.0
    # The AI contacts' own settings (the [ai] table, CFM_AI_*, --ai-* flags); None: defaults.
    ai: AIConfig | None = None
    default_contacts: list[str] = field(default_factory=list)
    reserved_names: list[str] = field(
        default_factory=lambda: ["system", "admin", "administrator", "cfm", "root", "server"]
    )

    # --- frames and sessions ---------------------------------------------------------
    max_frame: int = rules.DEFAULT_MAX_FRAME
    max_text: int = rules.DEFAULT_MAX_TEXT
    hello_timeout: float = 10.0
    replay_limit: int = 500
    history_limit: int = 50  # default `limit` of a history request
    send_buffer: int = 1 << 20  # bytes queued to one session before it is closed (1013)
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 3.0
    # 1012 restart (clients reconnect), or 1001 going away
    shutdown_close_code: int = rules.CloseCode.SERVICE_RESTART

    # --- abuse -----------------------------------------------------------------------
    rate_limits: bool = True  # False lifts the token buckets and the per-IP cap
    max_conns_per_ip: int = 32
    allowed_origins: list[str] = field(default_factory=list)  # empty: any Origin
    # /metrics answers loopback clients only unless this is true: its gauges (sessions,
    # connections) move when anyone signs in, invisible users included.
    metrics_public: bool = False
    abuse_max: int = 30  # errors or rate-limit breaches ...
    abuse_window: float = 10.0  # ... within this many seconds close the session (4008)
    nudge_interval: float = 5.0  # at most one nudge per (sender, target) per this many s
    # Seconds between a user's last session ending and watchers being told it is offline;
    # a reconnect within it is not shown at all (0: at once).
    presence_grace: float = 2.0
    # Inbound bytes per session, spent before decoding (each frame costs its size + 256):
    # a frame over the budget is dropped unread with rate_limited.
    recv_rate: float = 65536.0
    recv_burst: int = 262144
    # The wire under the messages (cfm_server/wsconn.py): every WebSocket frame, control
    # frames and fragments included, spends wire bytes before websockets parses it: its
    # size plus 256 (a data frame) or plus control_frame_cost (ping, pong, close). Over
    # the budget the server stops reading that connection until it refills.
    wire_rate: float = 262144.0
    wire_burst: int = 1 << 20
    control_frame_cost: int = 4096
    max_fragments: int = 64  # frames of one WebSocket message (close 1009 above)
    # The HTTP upgrade: from accept to the 101, and the bytes of the request.
    upgrade_timeout: float = 5.0
    upgrade_max_bytes: int = 16384
    # Answers the server pages (history, a join's replay, rosters): bytes per page, and the
    # members a join without members_limit lists (joined.count says how many there are).
    page_bytes: int = 131072
    roster_limit: int = 1000

    # Token buckets: frames per second, and the burst a session may use at once.
    say_rate: float = 20.0
    say_burst: int = 60
    nudge_rate: float = 0.5
    nudge_burst: int = 3
    typing_rate: float = 2.0
    typing_burst: int = 6
    presence_rate: float = 1.0
    presence_burst: int = 5
    join_rate: float = 5.0
    join_burst: int = 30
    history_rate: float = 10.0
    history_burst: int = 40
    contact_rate: float = 2.0
    contact_burst: int = 20
    # A search reads an index, not one room's range: fewer than history.
    search_rate: float = 2.0
    search_burst: int = 10

    # Per user, shared by all of a user's sessions (the buckets above are per session).
    user_say_rate: float = 20.0  # says and nudges
    user_say_burst: int = 60
    user_stranger_rate: float = 1.0  # DMs to users who have not listed the sender
    user_stranger_burst: int = 20
    user_contact_rate: float = 1.0  # contact add/remove/block/unblock
    user_contact_burst: int = 20
    user_room_rate: float = 0.2  # new group rooms (one every 5 s)
    user_room_burst: int = 10
    # typing and presence fan out to a DM peer, contacts and whole rooms: one person's
    # sessions together get what one session gets.
    user_typing_rate: float = 2.0
    user_typing_burst: int = 6
    user_presence_rate: float = 1.0
    user_presence_burst: int = 5
    # A search costs the node milliseconds of CPU (the index, then every hit read and
    # checked again): one person's sessions together get what one session gets, so
    # opening more sessions does not multiply what a user may make a node do.
    user_search_rate: float = 2.0
    user_search_burst: int = 10
    # Bytes (UTF-8) of message text a user stores, says and edits of all its sessions
    # together: what one session's inbound budget (recv_*) lets through. The say bucket
    # counts messages, and five sessions' 20 a second of 4,096 emoji (16 KiB each) were
    # 330 KB/s: a cluster's 64 MB Redis full in 2.5 minutes. A message bigger than the
    # burst goes once the bucket is full.
    user_text_rate: float = 65536.0
    user_text_burst: int = 262144
    # Bytes of stored messages a user's answers read (join replays, history pages,
    # search results), all its sessions together, charged as the pages are produced:
    # the per-session join and history buckets multiply with the sessions, and what a
    # reader then costs is how fast it reads (a cluster's Redis spent ~2.7 ms per MB
    # sent). The burst is above an honest resume (50 rooms of 500 messages of 100
    # characters: ~5 MB as sent; 32 MiB holds 50 x 500 of ~1.2 KB each); 4 MiB/s is
    # ~11 ms a second of Redis per user at most.
    user_read_rate: float = 4194304.0
    user_read_burst: int = 33554432
    # Sign-ins of one user (all its sessions, every node): a sign-in reads the user's
    # rooms (on a cluster node: subscribes to each and counts its unread in Redis, ~630
    # Redis commands for a user in 200 rooms), so reconnecting in a loop is bounded per
    # account, not only per connection. Far above a client's reconnects after a restart.
    user_signin_rate: float = 1.0
    user_signin_burst: int = 30
    max_rooms_per_user: int = 200  # group rooms one user may belong to at once
    # DM conversations one user may have (each is a line of every welcome: 19,000
    # strangers' DMs made a victim's welcome 1.16 MB, over the 1 MiB send_buffer).
    max_dms_per_user: int = 5000
    # New handles claimed per client address (loopback is not limited).
    signup_rate: float = 1 / 60
    signup_burst: int = 5

    # --- retention (see cfm_server/retention.py): 0 keeps everything ------------------
    retention_days: float = 0.0  # drop messages older than this, in every room
    retention_bytes: int = 0  # keep at most this much message text per room
    retention_interval: float = 3600.0  # seconds between two passes

    def __post_init__(self) -> None:
        for key in ("data_dir", "tls_cert", "tls_key"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                setattr(self, key, Path(value))

    # --- derived -------------------------------------------------------------------

    @property
    def cluster(self) -> bool:
        """One node of a cluster (``redis_url`` set), not a single node on its store."""
        return bool(self.redis_url)

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser()
        import platformdirs

        return Path(platformdirs.user_data_dir("cfm"))

    @property
    def answer_page_bytes(self) -> int:
        """Bytes per answer page: ``page_bytes``, at most a quarter of ``send_buffer`` (a
        page is produced only while a quarter of it is free; one item always fits)."""
        return min(self.page_bytes, max(1, self.send_buffer // 4))

    def rate(self, kind: str) -> tuple[float, int]:
        return getattr(self, f"{kind}_rate"), getattr(self, f"{kind}_burst")

    def client_limits(self) -> dict[str, Any]:
        """What ``welcome.limits`` tells a client."""
        limits: dict[str, Any] = {
            "max_text": self.max_text,
            "max_frame": self.max_frame,
            "replay": self.replay_limit,
            "history": rules.MAX_HISTORY_LIMIT,
        }
        if self.rate_limits:
            limits["rates"] = {
                kind: {"per_s": float(rate), "burst": burst}
                for kind, (rate, burst) in ((k, self.rate(k)) for k in RATE_KINDS)
            }
            limits["user_rates"] = {
                kind.removeprefix("user_"): {"per_s": float(rate), "burst": burst}
                for kind, (rate, burst) in ((k, self.rate(k)) for k in USER_RATE_KINDS)
            }
            limits["nudge_interval_ms"] = int(self.nudge_interval * 1000)
            # The inbound byte budget as SessionLimits builds it (each frame costs its
            # size + 256; the burst always admits one max_frame), so clients can pace
            # their bytes too.
            limits["recv"] = {"per_s": float(self.recv_rate),
                              "burst": max(self.recv_burst, self.max_frame + 256)}
        return limits

    def validate(self) -> ServerConfig:
        """Raise ConfigError naming the first bad setting; return self when all is well."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(0 <= self.port <= 65535, f"port must be 0-65535, not {self.port}")
        need(bool(self.host), "host must not be empty")
        need(self.store in STORES, f"store must be one of {', '.join(STORES)}, not {self.store!r}")
        need(self.registration in REGISTRATIONS,
             f"registration must be one of {', '.join(REGISTRATIONS)}, not {self.registration!r}")
        need(
            self.sqlite_synchronous in ("off", "normal", "full", "extra"),
            "sqlite_synchronous must be off, normal, full or extra",
        )
        need(self.commit_interval_ms >= 0, "commit_interval_ms must be >= 0")
        if self.redis_url:
            problem = redis_url_problem(self.redis_url)
            need(problem is None, f"redis_url {problem}")
        need(not self.node_id or (len(self.node_id) <= 64 and all(
            c.isascii() and (c.isalnum() or c in "-_.") for c in self.node_id)),
             f"node_id must be 1-64 letters, digits, '-', '_' or '.', not {self.node_id!r}")
        need(self.presence_expiry >= 1, "presence_expiry must be >= 1 second")
        need(self.state_log_bytes >= 65536, "state_log_bytes must be >= 65536")
        need(self.ai_lease_ttl >= 0.3, "ai_lease_ttl must be >= 0.3 seconds")
        need(self.min_free_mb >= 0, "min_free_mb must be >= 0 (0 turns the check off)")
        need(not self.public_url or self.public_url.startswith(("ws://", "wss://")),
             f"public_url must be a ws:// or wss:// URL, not {self.public_url!r}")
        if self.metrics_listen:
            from cfm_server.netaddr import parse_listen

            try:
                parse_listen(self.metrics_listen)
            except ValueError as exc:
                raise ConfigError(f"metrics_listen {exc}") from None
        need(1024 <= self.max_frame <= 1 << 24, "max_frame must be 1024-16777216 bytes")
        need(1 <= self.max_text <= self.max_frame, "max_text must be 1..max_frame characters")
        need(self.hello_timeout > 0, "hello_timeout must be > 0 seconds")
        need(1 <= self.replay_limit <= 100_000, "replay_limit must be 1-100000")
        need(
            1 <= self.history_limit <= rules.MAX_HISTORY_LIMIT,
            f"history_limit must be 1-{rules.MAX_HISTORY_LIMIT}",
        )
        need(self.send_buffer >= 1024, "send_buffer must be >= 1024 bytes")
        need(self.ping_interval >= 0, "ping_interval must be >= 0 (0 turns pings off)")
        need(self.ping_timeout >= 0, "ping_timeout must be >= 0 (0 waits forever)")
        need(self.close_timeout > 0, "close_timeout must be > 0 seconds")
        need(
            self.shutdown_close_code in SHUTDOWN_CODES,
            "shutdown_close_code must be 1012 (restart) or 1001 (going away)",
        )
        need(self.max_conns_per_ip >= 1, "max_conns_per_ip must be >= 1")
        need(self.abuse_max >= 1, "abuse_max must be >= 1")
        need(self.abuse_window > 0, "abuse_window must be > 0 seconds")
        need(self.nudge_interval >= 0, "nudge_interval must be >= 0 seconds")
        need(self.presence_grace >= 0, "presence_grace must be >= 0 seconds (0: at once)")
        need(self.recv_rate > 0, "recv_rate must be > 0 bytes per second")
        need(self.recv_burst >= 1, "recv_burst must be >= 1 byte")
        need(self.wire_rate > 0, "wire_rate must be > 0 bytes per second")
        need(self.wire_burst >= 1, "wire_burst must be >= 1 byte")
        need(self.control_frame_cost >= 0, "control_frame_cost must be >= 0 bytes")
        need(self.max_fragments >= 1, "max_fragments must be >= 1")
        need(self.upgrade_timeout > 0, "upgrade_timeout must be > 0 seconds")
        need(self.upgrade_max_bytes >= 1024, "upgrade_max_bytes must be >= 1024 bytes")
        need(self.page_bytes >= 1024, "page_bytes must be >= 1024 bytes")
        # An answer holds a page's worth of its user's read budget before each read.
        need(self.user_read_rate > 0 and self.user_read_burst >= self.answer_page_bytes,
             "user_read_rate must be > 0 and user_read_burst at least page_bytes")
        need(1 <= self.roster_limit <= 100_000, "roster_limit must be 1-100000")
        for kind in (*RATE_KINDS, *USER_RATE_KINDS, "signup"):
            rate, burst = self.rate(kind)
            need(rate > 0, f"{kind}_rate must be > 0 per second")
            need(burst >= 1, f"{kind}_burst must be >= 1")
        need(self.max_rooms_per_user >= 1, "max_rooms_per_user must be >= 1")
        need(self.retention_days >= 0, "retention_days must be >= 0 (0 keeps everything)")
        need(self.retention_bytes >= 0, "retention_bytes must be >= 0 (0: no size limit)")
        need(self.retention_interval > 0, "retention_interval must be > 0 seconds")
        need((self.tls_cert is None) == (self.tls_key is None),
             "tls_cert and tls_key go together: give both (PEM files), or neither")
        for proxy in self.trusted_proxies:
            need(_is_network(proxy),
                 f"trusted_proxies: {proxy!r} is not an IP address or network (10.0.0.0/8)")
        for key in ("default_contacts", "reserved_names"):
            for name in getattr(self, key):
                need(rules.is_valid_name(name), f"{key}: {name!r} is not a valid handle")
        return self


def _is_network(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(ServerConfig)
# Settings read from flat keys; ``ai`` has a table and an env prefix of its own.
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ServerConfig) if f.name != "ai")


# What a Redis URL may say beyond host, port and database (redis-py takes them as
# keywords, and fails on any other with a traceback).
REDIS_URL_OPTIONS = frozenset({"db", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
                               "ssl_keyfile", "ssl_check_hostname", "socket_timeout",
                               "socket_connect_timeout", "health_check_interval", "protocol",
                               "client_name"})


def redact_url(url: str) -> str:
    """A URL fit for a log line: no password (``redis://:secret@host`` → ``redis://…@host``)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}{sep}…@{host}" if sep and at and userinfo else url


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, with the fix, in words; None: nothing. redis-py
    takes a database that is no number as database 0 without a word."""
    from urllib.parse import parse_qs, urlsplit

    shown = redact_url(url)
    if not url.startswith(REDIS_SCHEMES):
        return ("must be a redis://, rediss://, unix:// or redis+cluster:// URL "
                f"(redis://HOST:PORT/DB), not {shown!r}")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a port that is no number)
    except ValueError:
        return f"{shown!r}: the port is no number 1-65535 (redis://HOST:PORT/DB)"
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - REDIS_URL_OPTIONS)
    if unknown:
        return (f"{shown!r} has options Redis clients do not take: {', '.join(unknown)} "
                f"(they take {', '.join(sorted(REDIS_URL_OPTIONS))})")
    db = (query.get("db") or [""])[0]
    if parts.scheme != "unix":
        db = parts.path.strip("/") or db
    if db and not db.isdigit():
        return (f"{shown!r}: the database is {db!r}; give a number, such as "
                f"redis://HOST:PORT/0")
    if db and int(db) and parts.scheme.endswith("+cluster"):
        return (f"{shown!r}: a Redis Cluster has database 0 only, not {db}; drop the "
                f"/{db}")
    return None


def _coerce(name: str, value: Any, source: str) -> Any:
    """A raw value from TOML or the environment as the field's type."""
    kind = FIELD_TYPES[name]
    where = f"{name} (from {source})"
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if kind is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be an integer, not {value!r}") from None
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, not {value!r}") from None
    if kind == list[str]:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    if kind == Path | None:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where} must be a path, not {value!r}")
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def default_config_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("cfm")) / "server.toml"


def read_toml(path: Path) -> dict[str, Any]:
    """The server settings of a TOML file, with its ``[ai]`` table (if any) under ``ai``."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Accept both a flat file and one with a [server] table.
    table = raw.get("server", raw) if isinstance(raw.get("server"), dict) else raw
    values: dict[str, Any] = {}
    ai_table = raw.get("ai")
    if ai_table is not None:
        if not isinstance(ai_table, dict):
            raise ConfigError(f"config file {path}: [ai] must be a table")
        values["ai"] = ai_table
    for key, value in table.items():
        if key == "ai":
            continue
        name = key.replace("-", "_")
        if name not in FIELD_NAMES:
            raise ConfigError(f"config file {path}: unknown setting {key!r}"
                              f"{_did_you_mean(name)}")
        values[name] = _coerce(name, value, str(path))
    return values


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for name in FIELD_NAMES:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            values[name] = _coerce(name, environ[key], key)
    return values


# CFM_* variables read by something other than ServerConfig and AIConfig: cfm serve's
# logging flags, and the clients (cfm chat, cfm bot) that may share the environment.
OTHER_ENV = ("CFM_LOG_LEVEL", "CFM_LOG_FORMAT", "CFM_LOG_FILE", "CFM_SERVER")
# Looks like a setting, and is read by nothing on purpose: said so in words.
NOT_READ_ENV = {
    "CFM_INVITE": "cfm chat takes an invite code from --invite or its sign-in form only "
                  "(a code left in the environment would spend a use at every sign-up)",
}


def known_env_names() -> list[str]:
    from cfm_server.ai.config import ENV_PREFIX as AI_PREFIX

    ai_fields = [f.name for f in dataclasses.fields(AIConfig) if f.name != "personas"]
    return ([ENV_PREFIX + name.upper() for name in FIELD_NAMES]
            + [AI_PREFIX + name.upper() for name in ai_fields] + list(OTHER_ENV))


def unknown_env_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """A sentence for each ``CFM_*`` variable that no part of cfm reads: a typo there
    (``CFM_REGISTRATON=invite``) silently leaves the default in force."""
    import difflib

    environ = os.environ if environ is None else environ
    known = known_env_names()
    warnings = []
    for key in sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known):
        if key in NOT_READ_ENV:
            warnings.append(f"the environment variable {key} is ignored: {NOT_READ_ENV[key]}")
            continue
        close = difflib.get_close_matches(key, known, n=2, cutoff=0.75)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        warnings.append(f"the environment variable {key} is not a cfm setting{hint}; it "
                        f"is ignored")
    return warnings


def load_config(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    ai_flags: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Defaults < TOML < ``CFM_*`` env < ``overrides`` (flags; None values are skipped).

    The AI contacts' settings follow the same order: the ``[ai]`` table, ``CFM_AI_*``
    and ``ai_flags`` (``backend``, ``base_url``, ``model``, ``account_id``; None: not given).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_toml(config_file))
    else:
        default = default_config_file()
        if default.is_file():
            values.update(read_toml(default))
    values.update(read_env(environ))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    try:
        values["ai"] = AIConfig.from_sources(
            values.get("ai"), environ, no_ai=not values.get("ai_enabled", True), **(ai_flags or {})
        )
    except (AIConfigError, TypeError) as exc:
        raise ConfigError(f"AI contacts: {exc}") from None
    return ServerConfig(**values).validate()


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--set``, coerced to the field's type."""
    key, sep, value = text.partition("=")
    name = key.strip().replace("-", "_")
    if not sep:
        raise ConfigError(f"--set wants KEY=VALUE with a config key, not {text!r}")
    if name not in FIELD_NAMES:
        raise ConfigError(f"--set: no setting {key.strip()!r}{_did_you_mean(name)};"
                          " docs/server.md lists them all")
    return name, _coerce(name, value, "--set")


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, FIELD_NAMES, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""

