"""``bench.compare --profile`` says where each process's CPU goes by layer: a sample counts
for the innermost frame of a known layer, and the shares become ms per mail."""

from __future__ import annotations

from bench.layers import OTHER, by_layer, layer_of, report

RUN = "Runner.run (asyncio/runners.py:118)"
HANDLE = "Consuming._handle (shared/broker/consuming.py:235)"
SIGN = "Signer.handle (services/signer/service.py:127)"


def test_a_sample_counts_for_its_innermost_known_layer() -> None:
    """A system call or OpenSSL at the leaf wins; else the innermost frame of a known layer;
    the loop's own time is what samples stopped in ``Runner.run``."""
    write = "StreamWriter.write (asyncio/streams.py:343)"
    assert layer_of([RUN, HANDLE, SIGN, write]).startswith("socket writes")
    rsa = "SigningKey.sign_digest (services/signer/dkim_sign.py:99)"
    assert layer_of([RUN, HANDLE, SIGN, rsa]) == "RSA signatures (OpenSSL)"
    marshal = "ChannelFrame.marshall (aiormq/abc.py:220)"
    assert layer_of([RUN, HANDLE, SIGN, marshal, "_string (pamqp/encode.py:370)"]).startswith(
        "AMQP client"
    )
    assert layer_of([RUN, HANDLE, SIGN]) == "Hato's handlers and store"
    assert layer_of([RUN, HANDLE]) == "Hato's broker layer (publish, consume, seal)"
    assert layer_of([RUN]).startswith("event loop")
    assert layer_of(["<module> (x.py:1)"]) == OTHER


def test_shares_add_up_and_become_ms_per_mail() -> None:
    """Shares of py-spy's collapsed stacks, largest first; the report multiplies them by the
    process's CPU per mail."""
    collapsed = "\n".join(
        [
            f"{RUN};{HANDLE};{SIGN};SigningKey.sign_digest (services/signer/dkim_sign.py:99) 3",
            f"{RUN};{HANDLE};{SIGN} 1",
            "not a sample line",
        ]
    )
    shares = by_layer(collapsed)
    assert list(shares) == ["RSA signatures (OpenSSL)", "Hato's handlers and store"]
    assert shares["RSA signatures (OpenSSL)"] == 0.75
    assert by_layer("") == {}
    text = report({"signer": {k: v * 2.0 for k, v in shares.items()}}, "1 KB")
    assert "signer 2.00:" in text
    assert " 1.50  RSA signatures (OpenSSL)" in text
