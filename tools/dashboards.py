"""Hato's Grafana dashboards, written as code: ``python -m tools.dashboards`` writes
deploy/grafana/dashboards/*.json (``--check`` only says whether they are current).

Four dashboards: the overview (throughput, outcomes, latency, backlog, health of what expires),
delivery by provider group and source IP (deferral and bounce rates, throttling, warm-up), one
tenant at a time, and the infrastructure (each service's CPU and memory, RabbitMQ, the
database). tests/unit/test_dashboards.py keeps the files equal to what this module makes, and
tests/e2e/test_observe.py runs every panel's query against a Prometheus scraping a running
stack: each must parse and return data.

Queries use ``$__rate_interval`` (Grafana's rate window for the scrape interval) and the
dashboards' variables (``$tenant``, ``$pool``: regular expressions, ``.*`` for all).
Bounce reasons are whatever the classifier names them: nothing here lists them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Joins a process's own series with the service it is (hato_service_info is per process).
BY_SERVICE = "* on (instance) group_left (service) hato_service_info"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # label_values(...)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = field(default_factory=tuple)


def p(title: str, *targets: Target | str, **kw) -> Panel:
    return Panel(title, tuple(t if isinstance(t, Target) else Target(t) for t in targets), **kw)


def t(expr: str, legend: str = "") -> Target:
    return Target(expr, legend)


def quantiles(metric: str, by: str, where: str = "") -> tuple[Target, ...]:
    """p50 and p99 of a histogram, per ``by`` (comma-separated labels)."""
    sel = f"{{{where}}}" if where else ""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",") if label.strip())
    return tuple(
        t(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{sel}[{RATE}])))",
            f"p{round(q * 100)} {legend}".strip(),
        )
        for q in (0.5, 0.99)
    )


def ratio(num: str, den: str, by: str) -> str:
    """The share of ``num`` in ``den`` (both counters), per ``by``."""
    return f"sum by ({by}) (rate({num}[{RATE}]))\n  / sum by ({by}) (rate({den}[{RATE}]))"


# -- the overview ------------------------------------------------------------------------------

OVERVIEW = Dashboard(
    uid="hato-overview",
    title="Hato overview",
    description="Is mail coming in, going out and ending well, how fast, and is anything "
    "piling up or about to expire.",
    rows=(
        Row(
            "Throughput",
            (
                p(
                    "Accepted messages/s by door",
                    t(f"sum by (door) (rate(hato_ingest_accepted_total[{RATE}]))", "{{door}}"),
                    unit="ops",
                ),
                p(
                    "Refused/s by door and class",
                    t(
                        f"sum by (door, class) (rate(hato_ingest_refused_total[{RATE}]))",
                        "{{door}} {{class}}",
                    ),
                    t(
                        f"sum(rate(hato_ingest_unavailable_total[{RATE}]))",
                        "not durable (451 4.3.0 / 503)",
                    ),
                    unit="ops",
                    description="4xx/5xx SMTP replies, refused HTTP sends and AMQP submissions.",
                ),
                p(
                    "Recipient outcomes/s",
                    t(
                        f"sum by (status) (rate(hato_recipient_outcomes_total[{RATE}]))",
                        "{{status}}",
                    ),
                    unit="ops",
                    description="delivered, deferred (each deferral), bounced, expired, "
                    "suppressed, complained.",
                ),
                p(
                    "Signing outcomes/s",
                    t(
                        f"sum by (outcome) (rate(hato_signer_messages_total[{RATE}]))",
                        "{{outcome}}",
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Latency",
            (
                p(
                    "Accept (durable and queued) by door",
                    *quantiles("hato_ingest_accept_seconds", "door"),
                    unit="s",
                ),
                p("DKIM signing", *quantiles("hato_signer_sign_seconds", "instance"), unit="s"),
                p(
                    "One delivery attempt (SMTP transaction) by provider",
                    *quantiles("hato_delivery_attempt_seconds", "provider"),
                    unit="s",
                ),
                p(
                    "Accepted → final state by status",
                    *quantiles("hato_accept_to_final_seconds", "status"),
                    unit="s",
                    description="Deferred mail retries for hours: the buckets reach a week.",
                ),
            ),
        ),
        Row(
            "Backlog",
            (
                p(
                    "Jobs waiting by queue",
                    t(
                        'max by (queue) (hato_queue_messages{queue!~"retry\\\\..*|dead"})',
                        "{{queue}}",
                    ),
                ),
                p(
                    "Oldest job by queue",
                    t("max by (queue) (hato_queue_oldest_job_age_seconds)", "{{queue}}"),
                    unit="s",
                    description="How long the job at the head of each work queue has waited.",
                ),
                p(
                    "Deferred mail waiting to retry",
                    t(
                        'sum(max by (queue) (hato_queue_messages{queue=~"retry\\\\..*"}))',
                        "delivery jobs in retry queues",
                    ),
                ),
                p(
                    "Dead-lettered jobs",
                    t('max(hato_queue_messages{queue="dead"})', "in the dead-letter queue"),
                    t(
                        "sum by (queue) (increase(hato_consumed_messages_total"
                        f'{{outcome="dead"}}[{RATE}]))',
                        "new from {{queue}}",
                    ),
                    description="`hato dead list` shows each job, its queue and the reason.",
                ),
                p(
                    "Job age when taken, p99 by queue",
                    *quantiles("hato_queue_wait_seconds", "queue")[1:],
                    unit="s",
                ),
                p(
                    "Broker messages handled/s by queue and outcome",
                    t(
                        f"sum by (queue, outcome) (rate(hato_consumed_messages_total[{RATE}]))",
                        "{{queue}} {{outcome}}",
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Doors",
            (
                p(
                    "HTTP requests/s by route and status",
                    t(
                        f"sum by (route, status) (rate(hato_ingest_http_requests_total[{RATE}]))",
                        "{{route}} {{status}}",
                    ),
                    unit="reqps",
                ),
                p(
                    "HTTP latency p99 by route",
                    *quantiles("hato_ingest_http_request_seconds", "route")[1:],
                    unit="s",
                ),
                p(
                    "SMTP sessions/s and TLS by listener",
                    t(
                        f"sum by (listener) (rate(hato_ingest_smtp_sessions_total[{RATE}]))",
                        "sessions {{listener}}",
                    ),
                    t(
                        f"sum by (listener, version) (rate(hato_ingest_smtp_tls_total[{RATE}]))",
                        "TLS {{listener}} {{version}}",
                    ),
                    unit="ops",
                ),
                p(
                    "SMTP AUTH by result, and lock-outs",
                    t(
                        f"sum by (result) (increase(hato_ingest_smtp_auth_total[{RATE}]))",
                        "{{result}}",
                    ),
                    t(
                        f"sum(increase(hato_ingest_smtp_lockouts_total[{RATE}]))",
                        "addresses locked out",
                    ),
                ),
            ),
        ),
        Row(
            "What expires",
            (
                p(
                    "TLS certificate: days left",
                    t(
                        "(min by (subject) (hato_tls_certificate_expiry_timestamp_seconds)"
                        " - time()) / 86400",
                        "{{subject}}",
                    ),
                    unit="d",
                    kind="stat",
                ),
                p(
                    "DKIM keys: age in days, and the age that starts a rotation",
                    t(
                        "max by (domain, selector, status) (hato_dkim_key_age_seconds) / 86400",
                        "{{domain}} {{selector}} ({{status}})",
                    ),
                    t("max(hato_dkim_rotate_after_seconds) / 86400", "rotation at"),
                    unit="d",
                ),
                p(
                    "DKIM keys by status (pending: a rotation under way)",
                    t("count by (status) (hato_dkim_key_age_seconds)", "{{status}}"),
                    kind="stat",
                ),
                p(
                    "Services running",
                    t("sum by (service) (hato_service_info)", "{{service}}"),
                    kind="stat",
                ),
            ),
        ),
    ),
)

# -- delivery by provider and IP ---------------------------------------------------------------

POOL = 'pool=~"$pool"'
ATTEMPTS = f"hato_delivery_attempts_total{{{POOL}}}"

DELIVERY = Dashboard(
    uid="hato-delivery",
    title="Hato delivery by provider and IP",
    description="How each provider group (gmail, outlook, yahoo, docomo, au, softbank, other) "
    "treats each source IP: deferrals, bounces, throttling, warm-up.",
    variables=(Variable("pool", "Pool", "label_values(hato_delivery_attempts_total, pool)"),),
    rows=(
        Row(
            "Providers",
            (
                p(
                    "Attempted recipients/s by provider and status",
                    t(
                        f"sum by (provider, status) (rate({ATTEMPTS}[{RATE}]))",
                        "{{provider}} {{status}}",
                    ),
                    unit="ops",
                ),
                p(
                    "Deferral rate by provider",
                    t(
                        ratio(
                            f'hato_delivery_attempts_total{{{POOL}, status="deferred"}}',
                            ATTEMPTS,
                            "provider",
                        ),
                        "{{provider}}",
                    ),
                    unit="percentunit",
                ),
                p(
                    "Bounce rate by provider",
                    t(
                        ratio(
                            f'hato_delivery_attempts_total{{{POOL}, status="bounced"}}',
                            ATTEMPTS,
                            "provider",
                        ),
                        "{{provider}}",
                    ),
                    unit="percentunit",
                ),
                p(
                    "Deferrals/s by provider and reason",
                    t(
                        "sum by (provider, reason) (rate(hato_delivery_deferrals_total"
                        f"{{{POOL}}}[{RATE}]))",
                        "{{provider}} {{reason}}",
                    ),
                    unit="ops",
                ),
                p(
                    "Bounces and complaints/s by provider and reason",
                    t(
                        f"sum by (provider, reason) (rate(hato_bounces_total[{RATE}]))",
                        "{{provider}} {{reason}}",
                    ),
                    unit="ops",
                    description="Reasons as the bounce classifier names them.",
                ),
                p(
                    "Outbound SMTP transactions/s by provider and TLS",
                    t(
                        f"sum by (provider, tls) (rate(hato_delivery_transactions_total[{RATE}]))",
                        "{{provider}} {{tls}}",
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Source IPs",
            (
                p(
                    "Deferral rate by source IP",
                    t(
                        ratio(
                            f'hato_delivery_attempts_total{{{POOL}, status="deferred"}}',
                            ATTEMPTS,
                            "pool, source_ip",
                        ),
                        "{{pool}} {{source_ip}}",
                    ),
                    unit="percentunit",
                ),
                p(
                    "Bounce rate by source IP",
                    t(
                        ratio(
                            f'hato_delivery_attempts_total{{{POOL}, status="bounced"}}',
                            ATTEMPTS,
                            "pool, source_ip",
                        ),
                        "{{pool}} {{source_ip}}",
                    ),
                    unit="percentunit",
                ),
                p(
                    "Throttled: time jobs waited for their destination's pace",
                    t(
                        "sum by (source_ip, provider) "
                        f"(rate(hato_dispatcher_throttled_seconds_total[{RATE}]))",
                        "{{source_ip}} → {{provider}}",
                    ),
                    unit="s",
                    description="Seconds waited per second: 2 means two jobs waiting all along.",
                ),
                p(
                    "Pace kept (share of the configured limit) and slow-downs",
                    t(
                        "min by (source_ip, provider) (hato_dispatcher_pace_ratio)",
                        "pace {{source_ip}} → {{provider}}",
                    ),
                    t(
                        "sum by (source_ip, provider) "
                        f"(increase(hato_dispatcher_slowdowns_total[{RATE}]))",
                        "421/4.7.x {{source_ip}} → {{provider}}",
                    ),
                ),
                p(
                    "Reply rules: actions started and ended, jobs held by suspensions",
                    t(
                        "sum by (rule, action) "
                        f"(increase(hato_dispatcher_rules_triggered_total[{RATE}]))",
                        "started {{rule}} ({{action}})",
                    ),
                    t(
                        "sum by (rule, action) "
                        f"(increase(hato_dispatcher_rules_ended_total[{RATE}]))",
                        "ended {{rule}} ({{action}})",
                    ),
                    t(f"sum(increase(hato_dispatcher_held_total[{RATE}]))", "held jobs"),
                    description="A rule's action on a (source IP, provider) starts on matching "
                    "replies and ends by itself; `hato queue list` shows those running.",
                ),
                p(
                    "Warm-up: sent today, cap and headroom per IP",
                    t("max by (source_ip) (hato_dispatcher_sent_today)", "sent {{source_ip}}"),
                    t(
                        f"max by (pool, source_ip) (hato_dispatcher_warmup_cap{{{POOL}}})",
                        "cap {{pool}} {{source_ip}}",
                    ),
                    t(
                        f"max by (pool, source_ip) (hato_dispatcher_warmup_headroom{{{POOL}}})",
                        "headroom {{pool}} {{source_ip}}",
                    ),
                ),
                p(
                    "Attempt latency by pool",
                    *quantiles("hato_delivery_attempt_seconds", "pool", POOL),
                    unit="s",
                ),
            ),
        ),
    ),
)

# -- per tenant ------------------------------------------------------------------------------

TENANT = 'tenant=~"$tenant"'
OUTCOMES = f"hato_recipient_outcomes_total{{{TENANT}}}"

TENANTS = Dashboard(
    uid="hato-tenant",
    title="Hato per tenant",
    description="One tenant's (or several tenants') mail: what it sends, what becomes of it, "
    "and the rates mailbox providers judge it by.",
    variables=(Variable("tenant", "Tenant", "label_values(hato_ingest_accepted_total, tenant)"),),
    rows=(
        Row(
            "Traffic",
            (
                p(
                    "Accepted messages/s by tenant and door",
                    t(
                        f"sum by (tenant, door) (rate(hato_ingest_accepted_total{{{TENANT}}}"
                        f"[{RATE}]))",
                        "{{tenant}} {{door}}",
                    ),
                    unit="ops",
                ),
                p(
                    "Recipient outcomes/s by tenant and status",
                    t(
                        f"sum by (tenant, status) (rate({OUTCOMES}[{RATE}]))",
                        "{{tenant}} {{status}}",
                    ),
                    unit="ops",
                ),
                p(
                    "Delivered/s by tenant and provider",
                    t(
                        "sum by (tenant, provider) (rate(hato_recipient_outcomes_total"
                        f'{{{TENANT}, status="delivered"}}[{RATE}]))',
                        "{{tenant}} → {{provider}}",
                    ),
                    unit="ops",
                ),
                p(
                    "Suppressed at acceptance/s by tenant",
                    t(
                        "sum by (tenant) (rate(hato_recipient_outcomes_total"
                        f'{{{TENANT}, status="suppressed"}}[{RATE}]))',
                        "{{tenant}}",
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Reputation",
            (
                p(
                    "Bounce rate by tenant",
                    t(
                        f"sum by (tenant) (rate(hato_recipient_outcomes_total{{{TENANT}, "
                        f'status="bounced"}}[{RATE}]))\n  / sum by (tenant) (rate(hato_recipient'
                        f'_outcomes_total{{{TENANT}, status=~"delivered|bounced"}}[{RATE}]))',
                        "{{tenant}}",
                    ),
                    unit="percentunit",
                ),
                p(
                    "Complaint rate by tenant (providers' limit: 0.3%)",
                    t(
                        f"sum by (tenant) (rate(hato_recipient_outcomes_total{{{TENANT}, "
                        f'status="complained"}}[1h]))\n  / sum by (tenant) (rate(hato_recipient'
                        f'_outcomes_total{{{TENANT}, status="delivered"}}[1h]))',
                        "{{tenant}}",
                    ),
                    unit="percentunit",
                    description="Complaints per delivered recipient over the last hour.",
                ),
                p(
                    "Bounces and complaints/s by reason and source",
                    t(
                        f"sum by (tenant, reason, source) (rate(hato_bounces_total{{{TENANT}}}"
                        f"[{RATE}]))",
                        "{{tenant}} {{reason}} ({{source}})",
                    ),
                    unit="ops",
                ),
                p(
                    "Accepted → final state p99 by status (all tenants)",
                    *quantiles("hato_accept_to_final_seconds", "status")[1:],
                    unit="s",
                ),
            ),
        ),
    ),
)

# -- infrastructure ----------------------------------------------------------------------------

INFRASTRUCTURE = Dashboard(
    uid="hato-infrastructure",
    title="Hato infrastructure",
    description="Each Hato process's CPU, memory and dependencies; RabbitMQ from its "
    "rabbitmq_prometheus endpoint (job rabbitmq); the database (job ferretdb: FerretDB's "
    "/debug/metrics).",
    rows=(
        Row(
            "Hato services",
            (
                p(
                    "CPU by service (cores)",
                    t(
                        f"sum by (service) (rate(process_cpu_seconds_total[{RATE}]) {BY_SERVICE})",
                        "{{service}}",
                    ),
                ),
                p(
                    "Resident memory by service",
                    t(
                        f"sum by (service) (process_resident_memory_bytes {BY_SERVICE})",
                        "{{service}}",
                    ),
                    unit="bytes",
                ),
                p(
                    "Open file descriptors by service",
                    t(f"sum by (service) (process_open_fds {BY_SERVICE})", "{{service}}"),
                ),
                p(
                    "Dependencies reachable (1) by service",
                    t(
                        f"min by (service, dependency) (hato_dependency_up {BY_SERVICE})",
                        "{{service}} → {{dependency}}",
                    ),
                ),
                p(
                    "Scrape targets up",
                    t("sum by (job) (up)", "{{job}} up"),
                    t("count by (job) (up)", "{{job}} targets"),
                ),
                p(
                    "Publishes/s and unconfirmed publishes by exchange",
                    t(
                        f"sum by (exchange) (rate(hato_published_messages_total[{RATE}]))",
                        "{{exchange}}",
                    ),
                    t(
                        # 0 for an exchange without a failure (its series does not exist)
                        f"sum by (exchange) (rate(hato_publish_failures_total[{RATE}]))\n  or "
                        f"sum by (exchange) (rate(hato_published_messages_total[{RATE}])) * 0",
                        "failed {{exchange}}",
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "RabbitMQ",
            (
                p(
                    "Messages ready and unacknowledged",
                    t("sum(rabbitmq_queue_messages_ready)", "ready"),
                    t("sum(rabbitmq_queue_messages_unacked)", "unacked"),
                ),
                p(
                    "Messages received and delivered/s",
                    t(f"sum(rate(rabbitmq_global_messages_received_total[{RATE}]))", "received"),
                    t(
                        f"sum(rate(rabbitmq_global_messages_delivered_total[{RATE}]))",
                        "delivered",
                    ),
                    unit="ops",
                ),
                p(
                    "Connections, channels, consumers, queues",
                    t("sum(rabbitmq_connections)", "connections"),
                    t("sum(rabbitmq_channels)", "channels"),
                    t("sum(rabbitmq_consumers)", "consumers"),
                    t("sum(rabbitmq_queues)", "queues"),
                ),
                p(
                    "Memory and free disk",
                    t("sum(rabbitmq_process_resident_memory_bytes)", "resident memory"),
                    t("min(rabbitmq_disk_space_available_bytes)", "disk free"),
                    unit="bytes",
                ),
            ),
        ),
        Row(
            "Database",
            (
                p(
                    "Ping round trip from each service",
                    t(f"max by (service) (hato_store_ping_seconds {BY_SERVICE})", "{{service}}"),
                    unit="s",
                ),
                p(
                    "FerretDB CPU (cores) and goroutines",
                    t(
                        f'sum(rate(process_cpu_seconds_total{{job="ferretdb"}}[{RATE}]))',
                        "CPU",
                    ),
                    t('sum(go_goroutines{job="ferretdb"})', "goroutines"),
                ),
                p(
                    "FerretDB memory",
                    t('sum(process_resident_memory_bytes{job="ferretdb"})', "resident"),
                    t('sum(go_memstats_heap_inuse_bytes{job="ferretdb"})', "Go heap in use"),
                    unit="bytes",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (OVERVIEW, DELIVERY, TENANTS, INFRASTRUCTURE)


# -- Grafana's JSON ----------------------------------------------------------------------------


def _panel(panel: Panel, ident: int, x: int, y: int) -> dict:
    out: dict = {
        "id": ident,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend or "__auto",
                "range": True,
            }
            for i, target in enumerate(panel.targets)
        ],
    }
    if panel.description:
        out["description"] = panel.description
    if panel.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    else:
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    return out


def _variable(v: Variable) -> dict:
    return {
        "name": v.name,
        "label": v.label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": v.query, "refId": v.name},
        "definition": v.query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def render(d: Dashboard) -> dict:
    panels: list[dict] = []
    y, ident = 0, 1
    for row in d.rows:
        panels.append(
            {
                "id": ident,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        ident, y, x = ident + 1, y + 1, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, ident, x, y))
            ident, x = ident + 1, x + panel.width
        y += 8
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["hato"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                *(_variable(v) for v in d.variables),
            ]
        },
        "links": [{"type": "dashboards", "tags": ["hato"], "asDropdown": True, "title": "Hato"}],
        "panels": panels,
    }


def files() -> dict[Path, str]:
    """Each dashboard's path and its JSON text, as the repository keeps it."""
    return {
        FOLDER / f"{d.uid}.json": json.dumps(render(d), indent=2, ensure_ascii=False) + "\n"
        for d in DASHBOARDS
    }


def main(argv: list[str]) -> int:
    stale = [
        path for path, text in files().items() if not path.exists() or path.read_text() != text
    ]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(FOLDER.parents[2])} is not what tools/dashboards.py makes")
        return 1 if stale else 0
    for path, text in files().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
