"""The handshake limits as pure decisions: refused and credential-less handshakes spend the client address's
budget, valid tokens the gateway's and their account's; a storm of valid terminals from one address passes,
a flood without credentials is contained."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from hedgebridge.common import auth
from hedgebridge.common.config import ConfigError
from hedgebridge.gateway.config import from_env
from hedgebridge.gateway.handshake import Accept, ClientAccept, Refuse, decide
from hedgebridge.gateway.limits import ACCOUNT_LIMITED, ADDRESS_LIMITED, GATEWAY_BUSY, HandshakeLimits, TokenBucket

SECRET = auth.new_secret()
V1 = ["hedgebridge.v1"]
ADDRESS = "198.51.100.7"


def _limits(**changes: float) -> HandshakeLimits:
    values: dict[str, float] = {
        "address_rate": 10,
        "address_burst": 100,
        "gateway_rate": 500,
        "gateway_burst": 2000,
        "account_rate": 5,
        "account_burst": 30,
    }
    values.update(changes)
    return HandshakeLimits.of(
        address_rate=values["address_rate"],
        address_burst=int(values["address_burst"]),
        gateway_rate=values["gateway_rate"],
        gateway_burst=int(values["gateway_burst"]),
        account_rate=values["account_rate"],
        account_burst=int(values["account_burst"]),
    )


def _terminal(account: str) -> Accept | ClientAccept | Refuse:
    token = auth.mint_token(SECRET, role="ea", subject=account)
    return decide("/ea", f"Bearer {token}", V1, SECRET)


def _handshake(limits: HandshakeLimits, authorization: str | None, now: float, path: str = "/ea") -> Refuse | None:
    """What the gateway does with one request: the limits before and after the decision."""
    before = limits.before(ADDRESS, authorization is not None, now)
    if before is not None:
        return before
    verdict = decide(path, authorization, V1, SECRET)
    after = limits.after(verdict, ADDRESS, now)
    if after is not None:
        return after
    return verdict if isinstance(verdict, Refuse) else None


def test_a_thousand_valid_terminals_from_one_address_all_pass_at_once() -> None:
    limits = _limits()
    verdicts = [_terminal(f"ACC-{i}") for i in range(1000)]
    assert all(isinstance(v, Accept) for v in verdicts)
    assert [limits.after(v, ADDRESS, 100.0) for v in verdicts] == [None] * 1000
    assert limits.address.has(ADDRESS, 100.0)  # the address's budget is untouched


def test_a_credentialless_flood_is_contained_to_the_address_budget() -> None:
    limits = _limits()
    answers = [_handshake(limits, None, 100.0) for _ in range(1000)]
    first, rest = answers[:100], answers[100:]
    assert all(a is not None and a.status == HTTPStatus.UNAUTHORIZED for a in first)
    assert rest == [Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)] * 900
    assert len(limits.address.buckets) == 1
    # a valid terminal from the flooded address still gets in
    assert _handshake(limits, f"Bearer {auth.mint_token(SECRET, role='ea', subject='A1')}", 100.0) is None
    # and a bad token from it is refused with 429 (its budget is spent), not let through
    assert _handshake(limits, "Bearer not-a-jwt", 100.0) == Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)
    # another address has its own budget
    assert limits.before("203.0.113.1", False, 100.0) is None
    # the budget refills at its rate: one more refusal once 0.1 s at 10/s passed
    refill = _handshake(limits, None, 100.15)
    assert refill is not None
    assert refill.status == HTTPStatus.UNAUTHORIZED
    assert _handshake(limits, None, 100.15) == Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)


def test_refused_handshakes_of_every_kind_spend_the_address_budget() -> None:
    limits = _limits(address_burst=3, address_rate=0.001)
    wrong_path = decide("/nope", None, V1, SECRET)
    bad_version = decide("/ea", f"Bearer {auth.mint_token(SECRET, role='ea', subject='A1')}", ["x"], SECRET)
    wrong_role = decide("/ea", f"Bearer {auth.mint_token(SECRET, role='admin', subject='ops')}", V1, SECRET)
    for verdict in (wrong_path, bad_version, wrong_role):
        assert isinstance(verdict, Refuse)
        assert limits.after(verdict, ADDRESS, 1.0) is None
    assert limits.after(wrong_path, ADDRESS, 1.0) == Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)
    # a /client that will authenticate with AUTH brings no credentials at the handshake: it counts too
    later = decide("/client", None, V1, SECRET)
    assert later == ClientAccept(None, 1)
    assert limits.after(later, ADDRESS, 1.0) == Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)
    assert limits.unauthenticated(ADDRESS, 1.0) == Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)
    # a client with a valid token in the header does not
    admin = decide("/client", f"Bearer {auth.mint_token(SECRET, role='admin', subject='ops')}", V1, SECRET)
    assert isinstance(admin, ClientAccept)
    assert admin.principal is not None
    assert limits.after(admin, ADDRESS, 1.0) is None


def test_one_accounts_token_looping_is_limited_per_account() -> None:
    limits = _limits()
    verdict = _terminal("LEAKED")
    answers = [limits.after(verdict, ADDRESS, 50.0) for _ in range(40)]
    assert answers[:30] == [None] * 30
    assert answers[30:] == [Refuse(HTTPStatus.TOO_MANY_REQUESTS, ACCOUNT_LIMITED)] * 10
    assert limits.after(_terminal("OTHER"), ADDRESS, 50.0) is None  # other accounts are not held back
    assert limits.after(verdict, ADDRESS, 50.2) is None  # 5/s: one more after 0.2 s
    assert limits.after(verdict, ADDRESS, 50.2) == Refuse(HTTPStatus.TOO_MANY_REQUESTS, ACCOUNT_LIMITED)
    # clients are not limited per account (one system user may hold many connections)
    client = decide(
        "/client", f"Bearer {auth.mint_token(SECRET, role='system', subject='LEAKED', accounts=['LEAKED'])}", V1, SECRET
    )
    assert [limits.after(client, ADDRESS, 50.2) for _ in range(50)] == [None] * 50


def test_the_gateway_budget_answers_503_with_retry_after() -> None:
    limits = _limits(gateway_rate=2, gateway_burst=3, account_rate=0)
    verdict = _terminal("A1")
    assert [limits.after(verdict, ADDRESS, 10.0) for _ in range(3)] == [None] * 3
    busy = limits.after(verdict, ADDRESS, 10.0)
    assert busy == Refuse(HTTPStatus.SERVICE_UNAVAILABLE, GATEWAY_BUSY, retry_after_s=1)
    slow = _limits(gateway_rate=0.1, gateway_burst=1, account_rate=0)
    assert slow.after(verdict, ADDRESS, 0.0) is None
    answer = slow.after(verdict, ADDRESS, 0.0)
    assert answer is not None
    assert answer.retry_after_s == 10  # one token at 0.1/s
    # a refusal by the gateway's budget does not spend the account's
    tight = _limits(gateway_rate=1, gateway_burst=1, account_rate=0.001, account_burst=1)
    assert tight.after(_terminal("B1"), ADDRESS, 0.0) is None
    assert tight.after(_terminal("B2"), ADDRESS, 0.0) is not None
    assert tight.after(_terminal("B2"), ADDRESS, 2.0) is None


def test_rates_of_zero_mean_no_limit() -> None:
    limits = _limits(address_rate=0, gateway_rate=0, account_rate=0)
    verdict = _terminal("A1")
    assert all(limits.after(verdict, ADDRESS, 0.0) is None for _ in range(5000))
    assert all(_handshake(limits, None, 0.0) == decide("/ea", None, V1, SECRET) for _ in range(500))


def test_token_bucket_peeks_and_tells_the_wait() -> None:
    bucket = TokenBucket(rate=4, burst=2)
    assert bucket.has(0.0)
    assert bucket.take(0.0)
    assert bucket.take(0.0)
    assert not bucket.has(0.0)
    assert bucket.wait_s(0.0) == 0.25
    assert bucket.has(0.25)
    assert bucket.wait_s(10.0) == 0.0


def test_handshake_limit_settings_and_their_defaults() -> None:
    config = from_env({"HEDGEBRIDGE_JWT_SECRET": SECRET})
    assert (config.ip_connect_rate, config.ip_connect_burst) == (10, 100)
    assert (config.connect_rate, config.connect_burst) == (500, 2000)
    assert (config.account_connect_rate, config.account_connect_burst) == (5, 30)
    assert config.listen_backlog == 4096
    assert not config.proxies
    for name, value in (("CONNECT_RATE", "-1"), ("ACCOUNT_CONNECT_BURST", "0"), ("LISTEN_BACKLOG", "0")):
        with pytest.raises(ConfigError, match="HEDGEBRIDGE_GATEWAY_"):
            from_env({"HEDGEBRIDGE_JWT_SECRET": SECRET, f"HEDGEBRIDGE_GATEWAY_{name}": value})
