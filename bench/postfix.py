"""Postfix as a DKIM-signing relay on loopback, for the side-by-side benchmark.

One Postfix instance with its own configuration and queue directories (nothing under
/etc/postfix changes), listening on a port of its own, relaying everything to the sink and
signing every message through the OpenDKIM milter with an RSA-2048 key. Postfix and OpenDKIM
keep their Debian defaults except where a relay on loopback needs otherwise: no chroot, no
TLS, no local delivery, logging to a file.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DOMAIN = "bench.test"
SELECTOR = "bench"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = postfix.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_milters = inet:127.0.0.1:{milter_port}
non_smtpd_milters = $smtpd_milters
milter_default_action = tempfail
smtpd_tls_security_level = none
smtp_tls_security_level = none
biff = no
"""

OPENDKIM_CONF = """\
Syslog no
Mode s
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
Domain {domain}
Selector {selector}
KeyFile {dir}/dkim.private
InternalHosts 127.0.0.0/8
OversignHeaders From
Socket inet:{milter_port}@127.0.0.1
PidFile {dir}/opendkim.pid
UMask 002
"""


def master_cf(port: int) -> str:
    """Debian's master.cf with smtpd on our port instead of 25 and every service unchrooted."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if line[:1] not in ("#", " ", "\t") and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{port}"
            fields[4] = "n"
            line = "  ".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"


class PostfixRelay:
    """Starts and stops one Postfix instance and its OpenDKIM milter."""

    name = "postfix"

    def __init__(self, workdir: Path, port: int, sink_port: int, milter_port: int) -> None:
        self.dir = workdir / "postfix"
        self.port = port
        self.sink_port = sink_port
        self.milter_port = milter_port
        self.opendkim: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "queue").mkdir(exist_ok=True)
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "postfix", "postfix")
        fmt = {
            "dir": self.dir,
            "domain": DOMAIN,
            "selector": SELECTOR,
            "sink_port": self.sink_port,
            "milter_port": self.milter_port,
        }
        (self.dir / "main.cf").write_text(MAIN_CF.format(**fmt))
        (self.dir / "master.cf").write_text(master_cf(self.port))
        (self.dir / "opendkim.conf").write_text(OPENDKIM_CONF.format(**fmt))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file = self.dir / "dkim.private"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        log = (self.dir / "opendkim.log").open("ab")
        self.opendkim = subprocess.Popen(
            ["/usr/sbin/opendkim", "-f", "-x", str(self.dir / "opendkim.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._postfix("start")
        wait_port(self.port, 30, "Postfix")
        wait_port(self.milter_port, 30, "OpenDKIM")

    def _postfix(self, command: str) -> None:
        result = subprocess.run(
            ["/usr/sbin/postfix", "-c", str(self.dir), command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0 and command == "start":
            raise RuntimeError(f"postfix start failed:\n{result.stdout}{result.stderr}")

    def stop(self) -> None:
        self._postfix("stop")
        master = self.master_pid()
        deadline = time.monotonic() + 20
        while master and _alive(master) and time.monotonic() < deadline:
            time.sleep(0.1)
        if master and _alive(master):
            os.kill(master, signal.SIGKILL)
        if self.opendkim is not None and self.opendkim.poll() is None:
            self.opendkim.terminate()
            try:
                self.opendkim.wait(10)
            except subprocess.TimeoutExpired:
                self.opendkim.kill()
                self.opendkim.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def master_pid(self) -> int | None:
        try:
            return int((self.dir / "queue/pid/master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self) -> dict[str, list[int]]:
        """Postfix's processes by program (master, smtpd, cleanup, qmgr, smtp, ...) and OpenDKIM."""
        found: dict[str, list[int]] = {}
        master = self.master_pid()
        if master:
            for pid in [master, *descendants(master)]:
                program = _postfix_program(pid)
                if program != "?":  # exited while being listed
                    found.setdefault(program, []).append(pid)
        if self.opendkim is not None and self.opendkim.poll() is None:
            found["opendkim"] = [self.opendkim.pid, *descendants(self.opendkim.pid)]
        return found

    def delivered_count(self) -> int:
        """Messages Postfix logged as sent (a cross-check of the sink's count)."""
        try:
            return len(re.findall(r"status=sent", (self.dir / "maillog").read_text()))
        except OSError:
            return 0


def _postfix_program(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    program = os.path.basename(cmdline[0].decode(errors="replace"))
    return program or "?"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_port(port: int, timeout: float, what: str) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} is not listening on 127.0.0.1:{port} after {timeout}s")
