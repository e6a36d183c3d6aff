"""AI quotas per client address and per new account (issue 10, item 6): throw-away
accounts from one address cannot use up the global quota everyone shares."""

from __future__ import annotations

from typing import Any

import pytest

from cfm_server.ai.config import AIConfig
from cfm_server.ai.guards import Caller, DailyQuotas, Refused
from tests.ai.conftest import FakeClock
from tests.ai.llm_stub import LLMStub
from tests.wire import WireClient

PERSONA = "smartybot"


def use(quotas: DailyQuotas, user: str, caller: Caller) -> None:
    quotas.settle(quotas.reserve(user, caller), success=True)


def test_accounts_from_one_address_share_its_quota(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=10, total=100, per_address=3, clock=clock)
    here = Caller("203.0.113.9")
    for user in ("a1", "a2", "a3"):
        use(quotas, user, here)
    with pytest.raises(Refused) as refused:
        quotas.reserve("a4", here)
    assert refused.value.reason == "user_quota"
    use(quotas, "b1", Caller("198.51.100.7"))  # another address
    use(quotas, "c1", Caller(None))  # unknown address: per user and global only
    assert quotas.used_by_address("203.0.113.9") == 3
    clock.advance(86_400)  # a new UTC day
    use(quotas, "a4", here)


def test_failed_calls_give_the_address_its_slot_back(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=10, total=100, per_address=1, clock=clock)
    here = Caller("203.0.113.9")
    quotas.settle(quotas.reserve("a1", here), success=False)
    use(quotas, "a2", here)
    with pytest.raises(Refused):
        quotas.reserve("a3", here)


def test_new_accounts_get_the_smaller_quota(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=5, total=100, per_new_user=2, clock=clock)
    for _ in range(2):
        use(quotas, "newbie", Caller(new_account=True))
    with pytest.raises(Refused):
        quotas.reserve("newbie", Caller(new_account=True))
    for _ in range(5):
        use(quotas, "old", Caller())
    with pytest.raises(Refused):
        quotas.reserve("old", Caller())


async def test_the_server_tells_the_guards_each_users_address(
    server_factory: Any, llm: LLMStub
) -> None:
    ai = AIConfig(backend="openai", base_url=llm.openai_url, model="stub",
                  address_daily_quota=2, new_user_daily_quota=0, rooms=())
    server = await server_factory(ai_enabled=True, ai=ai, trusted_proxies=["127.0.0.1"])
    answers = []
    for n in range(3):  # three fresh accounts behind one address
        async with WireClient.connect(
            server.url, additional_headers={"X-Forwarded-For": "203.0.113.9"}
        ) as client:
            await client.hello(f"throwaway{n}")
            await client.send({"t": "say", "to": PERSONA, "text": "hi", "id": "q"})
            answers.append((await client.recv_until("msg", timeout=10))["text"])
    assert len(llm.calls) == 2  # the third never reached the model
    assert answers[2] not in answers[:2]
    # Someone elsewhere still gets answers from the model.
    async with WireClient.connect(
        server.url, additional_headers={"X-Forwarded-For": "198.51.100.7"}
    ) as other:
        await other.hello("elsewhere")
        await other.send({"t": "say", "to": PERSONA, "text": "hi", "id": "q"})
        await other.recv_until("msg", timeout=10)
    assert len(llm.calls) == 3
