"""The broker codec: what goes in comes out, and anything else is a CodecError."""

from __future__ import annotations

import pytest

from shared.errors import CodecError
from shared.schemas import (
    DeliveryResult,
    Recipient,
    RecipientResult,
    RecipientStatus,
    Reply,
    SignBatch,
    SignJob,
    decode,
    encode,
)


def job() -> SignJob:
    return SignJob(
        message_id="m1",
        tenant="acme",
        mail_from="a@shop.test",
        from_domain="shop.test",
        recipients=(Recipient(id="r1", address="b@ok.test"),),
        pool="default",
    )


def test_a_job_and_its_payload_survive_the_round_trip() -> None:
    """Payload bytes (CRLF, 8-bit, even newlines) come back exactly, with the model."""
    payload = b"Subject: x\r\n\r\n\xe3\x81\x82\nbody\r\n.\r\n"
    original = job()
    message, out = decode(encode(original, payload))
    assert message == original
    assert out == payload


def test_a_sign_batch_gives_back_each_job_with_its_own_message() -> None:
    """Messages of any bytes (newlines, an empty one) come back split where they were
    joined, each with its job; the batch's clock is its oldest acceptance."""
    first = job()
    second = first.model_copy(update={"message_id": "m2", "created_at": first.created_at})
    older = first.model_copy(
        update={"message_id": "m3", "created_at": first.created_at.replace(year=2020)}
    )
    items = [(first, b"Subject: a\r\n\r\n\n\n"), (second, b""), (older, b"\xe3\x81\x82\r\n")]
    batch, payload = decode(encode(*SignBatch.of(items)))
    assert isinstance(batch, SignBatch)
    assert batch.split(payload) == items
    assert batch.created_at == older.created_at


@pytest.mark.parametrize(
    ("sizes", "payload"),
    [((3, 3), b"abcde"), ((3,), b"abc"), ((6, -1), b"abcde")],
    ids=["short", "a-size-missing", "negative"],
)
def test_a_sign_batch_whose_sizes_do_not_fit_is_a_codec_error(
    sizes: tuple[int, ...], payload: bytes
) -> None:
    """Sizes that do not add up to the payload, or one per job, are refused, never guessed."""
    body = (
        (
            f'{{"kind":"sign_batch","jobs":[{job().model_dump_json()},{job().model_dump_json()}],'
            f'"sizes":{list(sizes)}}}'
        ).encode()
        + b"\n"
        + payload
    )
    with pytest.raises(CodecError):
        batch, rest = decode(body)
        assert isinstance(batch, SignBatch)
        batch.split(rest)


def test_results_round_trip_with_enum_statuses() -> None:
    """A DeliveryResult decodes to the same frozen value."""
    result = DeliveryResult(
        message_id="m1",
        tenant="acme",
        attempt=2,
        destination="127.0.0.1:25",
        results=(
            RecipientResult(
                recipient_id="r1",
                address="b@ok.test",
                status=RecipientStatus.BOUNCED,
                reply=Reply(code=550),
            ),
        ),
    )
    assert decode(encode(result))[0] == result


@pytest.mark.parametrize(
    "body, why",
    [
        (b"no newline at all", "no envelope line"),
        (b"{not json}\n", "invalid envelope"),
        (b'{"kind": "launch-missiles"}\n', "invalid envelope"),
        (b'{"kind": "sign", "message_id": "m"}\n', "invalid envelope"),
    ],
)
def test_anything_else_is_a_codec_error(body: bytes, why: str) -> None:
    """Garbage, unknown kinds and missing fields are refused with a reason."""
    with pytest.raises(CodecError, match=why):
        decode(body)


def test_a_newer_schema_version_is_refused() -> None:
    """A consumer does not guess at a schema it does not know."""
    body = encode(job()).replace(b'"schema_version":1', b'"schema_version":99')
    with pytest.raises(CodecError, match="schema_version 99"):
        decode(body)


def test_recipient_domain_is_lower_case() -> None:
    """A recipient's domain is lower-cased: `Bob@OK.Test` joins its domain's job, route and pace."""
    assert Recipient(id="r", address="Bob@OK.Test").domain == "ok.test"


def test_an_event_s_id_is_its_message_recipient_type_and_step() -> None:
    """Event.of derives the id: the same step recorded twice is one event, another attempt or
    another type is another."""
    from shared.schemas import Event, EventType

    def of(type_=EventType.DEFERRED, attempt=1):
        return Event.of(type_, tenant="acme", message_id="m", recipient_id="r", step=(attempt,))

    assert of().id == of().id
    assert len({of().id, of(attempt=2).id, of(EventType.DELIVERED).id}) == 3
