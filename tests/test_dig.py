"""End-to-end checks through dig, the client operators actually use."""

from __future__ import annotations

import shutil

import pytest
import trio

Where = tuple[str, int]

if shutil.which("dig") is None:  # pragma: no cover - make test installs it
    pytest.fail("dig is required (Debian package bind9-dnsutils)", pytrace=False)


async def dig(where: Where, *args: str) -> str:
    host, port = where
    command = ["dig", f"@{host}", "-p", str(port), "+time=5", "+tries=1", *args]
    with trio.fail_after(20):
        result = await trio.run_process(command, capture_stdout=True, check=False)
    assert result.returncode == 0, result
    return result.stdout.decode()


async def test_dig_short_answers(where: Where) -> None:
    assert (await dig(where, "+short", "www.example.com", "A")).split() == ["192.0.2.10"]
    assert (await dig(where, "+short", "www.example.com", "AAAA")).split() == ["2001:db8::10"]
    assert sorted((await dig(where, "+short", "api.example.com")).split()) == [
        "192.0.2.20",
        "192.0.2.21",
    ]


async def test_dig_sees_an_authoritative_answer_without_recursion(where: Where) -> None:
    out = await dig(where, "www.example.com", "A")
    assert "status: NOERROR" in out
    flags = out.split(";; flags:")[1].split(";")[0].split()
    assert "aa" in flags and "qr" in flags and "ra" not in flags


async def test_dig_nxdomain_and_nodata_carry_the_soa(where: Where) -> None:
    nx = await dig(where, "missing.example.com", "A")
    assert "status: NXDOMAIN" in nx
    assert "AUTHORITY: 1" in nx and "SOA" in nx
    nodata = await dig(where, "www.example.com", "MX")
    assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata and "SOA" in nodata


async def test_dig_falls_back_to_tcp_for_big_answers(where: Where) -> None:
    out = await dig(where, "+noedns", "big.example.com", "AAAA")
    # dig retries over TCP after a truncated UDP answer and prints all 100 records.
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 100" in out
    assert "(TCP)" in out


async def test_dig_refused_outside_our_zones(where: Where) -> None:
    out = await dig(where, "www.example.org", "A")
    assert "status: REFUSED" in out


@pytest.mark.parametrize(
    ("options", "status"),
    [
        (["+edns=1", "+noednsnegotiation"], "BADVERS"),
        (["+opcode=notify"], "NOTIMP"),
        (["+header-only"], "FORMERR"),
    ],
)
async def test_dig_odd_queries_get_clean_errors(
    where: Where, options: list[str], status: str
) -> None:
    out = await dig(where, *options, "www.example.com", "A")
    assert f"status: {status}" in out
    assert (await dig(where, "+short", "www.example.com")).split() == ["192.0.2.10"]
