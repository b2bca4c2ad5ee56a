"""Where `hato amqp user` finds RabbitMQ's management API (hato/amqp_users.py)."""

from __future__ import annotations

from hato.amqp_users import endpoint, team_url
from shared.settings import BrokerSettings


def test_by_default_port_15672_on_the_amqp_host_with_its_credentials_and_vhost() -> None:
    """No management URL: the first AMQP URL's host, user, password and vhost."""
    where = endpoint(BrokerSettings(url="amqp://hato:s%40cret@mq.internal:5672/prod,amqp://x/"))
    assert (where.base, where.user, where.password, where.vhost) == (
        "http://mq.internal:15672",
        "hato",
        "s@cret",
        "prod",
    )


def test_a_management_url_with_its_own_administrator() -> None:
    """HATO_AMQP_MANAGEMENT_URL wins, credentials included; the vhost stays the AMQP URL's."""
    where = endpoint(
        BrokerSettings(
            url="amqp://hato:hato@127.0.0.1:5672/",
            management_url="https://admin:pw@[::1]:15671/rabbit/",
        )
    )
    assert (where.base, where.user, where.password, where.vhost) == (
        "https://[::1]:15671/rabbit",
        "admin",
        "pw",
        "/",
    )


def test_the_team_url_has_the_new_credentials_on_the_brokers_address() -> None:
    """What a team connects with: its user and password (quoted) on the first AMQP URL's
    host, port and vhost."""
    settings = BrokerSettings(url="amqp://hato:hato@mq.internal:5672/prod,amqp://other/")
    assert team_url(settings, "hato.team.acme", "p/w+") == (
        "amqp://hato.team.acme:p%2Fw%2B@mq.internal:5672/prod"
    )
