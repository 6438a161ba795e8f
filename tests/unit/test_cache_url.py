"""Cache URLs: one URL selects a single server, a Sentinel-watched master or a Redis Cluster."""

from __future__ import annotations

import pytest

from hedgebridge.common import cache
from hedgebridge.common.cache import CacheUrl, parse_url


def test_single_server_urls_are_taken_as_they_are() -> None:
    for url, tls in (("redis://127.0.0.1:6400/0", False), ("rediss://cache.example:6380/2", True)):
        assert parse_url(url) == CacheUrl("single", url, tls=tls)
    assert parse_url("unix:///run/valkey.sock?db=1").mode == "single"


def test_sentinel_urls() -> None:
    target = parse_url("redis+sentinel://app:p%40ss@s1.example:26379,s2.example/mymaster/3")
    assert target.mode == "sentinel"
    assert target.nodes == (("s1.example", 26379), ("s2.example", 26379))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 3, "app", "p@ss")
    assert not target.tls
    secure = parse_url("rediss+sentinel://:secret@10.0.0.1:5000/cache")
    assert (secure.tls, secure.username, secure.password, secure.db) == (True, None, "secret", 0)
    with pytest.raises(ValueError, match="names the master"):
        parse_url("redis+sentinel://s1.example:26379")
    with pytest.raises(ValueError, match="database number"):
        parse_url("redis+sentinel://s1.example:26379/mymaster/x")


def test_cluster_urls() -> None:
    target = parse_url("redis+cluster://n1.example:7000,n2.example:7001,n3.example")
    assert target.mode == "cluster"
    assert target.nodes == (("n1.example", 7000), ("n2.example", 7001), ("n3.example", 6379))
    assert parse_url("rediss+cluster://u:p@n1.example:7000").tls
    with pytest.raises(ValueError, match="only database 0"):
        parse_url("redis+cluster://n1.example:7000/1")
    with pytest.raises(ValueError, match="not a port"):
        parse_url("redis+cluster://n1.example:port")


def test_other_schemes_are_refused() -> None:
    for url in ("http://cache.example", "memcached://x:11211", "cache.example:16379"):
        with pytest.raises(ValueError, match="a cache URL starts with"):
            parse_url(url)


def test_an_accounts_keys_share_a_hash_tag() -> None:
    # the account id in braces is the hash tag: the snapshot transaction's keys land in one cluster slot
    keys = [cache.POSITIONS.format("A-1"), cache.SYNCED.format("A-1"), cache.BALANCE.format("A-1")]
    assert keys == ["hb:positions:{A-1}", "hb:synced:{A-1}", "hb:balance:{A-1}"]
    assert {k[k.index("{") : k.index("}") + 1] for k in keys} == {"{A-1}"}
