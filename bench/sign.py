"""Signer cost: DKIM signatures per second per core, against raw OpenSSL signing.

    .venv/bin/python -m bench.sign [--seconds 2]

For 2 KB and 100 KB messages: signatures per second on one core with RSA-2048, Ed25519 and
both, and the ratio of Hato's cost per RSA signature to OpenSSL's raw RSA-2048 signing of a
digest with the same key, in the same run. Then the peak memory of signing a 25 MB message
(in a fresh process, so earlier work does not count).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from services.signer.dkim_sign import SigningKey, sign
from shared.dkim import generate_ed25519, generate_rsa


def message(size: int) -> bytes:
    head = (
        b"From: Shop <orders@shop.test>\r\nTo: bob@ok.test\r\nSubject: Your order\r\n"
        b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@shop.test>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a warm-up)."""
    for _ in range(20):
        fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        n += 20
    return n / elapsed


def peak_memory_25mb() -> dict:
    code = (
        "import resource, json\n"
        "from bench.sign import message\n"
        "from services.signer.dkim_sign import SigningKey, sign\n"
        "from shared.dkim import generate_rsa\n"
        "key = SigningKey.load(generate_rsa('shop.test', 's1'))\n"
        "m = message(25 * 1024 * 1024)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "signed = sign(m, [key])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'message_mb': len(m) / 2**20, 'rss_before_mb': before / 1024,\n"
        "                  'rss_peak_mb': after / 1024,\n"
        "                  'signing_extra_mb': (after - before) / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    return json.loads(out.stdout)


def main(seconds: float) -> None:
    rsa_key = SigningKey.load(generate_rsa("shop.test", "s1"))
    ed_key = SigningKey.load(generate_ed25519("shop.test", "e1"))
    digest = hashlib.sha256(b"x").digest()
    openssl = rate(
        lambda: rsa_key.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())),
        seconds,
    )
    print(f"raw OpenSSL RSA-2048 signing of a digest: {openssl:,.0f}/s ({1000 / openssl:.3f} ms)")
    print(
        f"{'size':>7} {'RSA/s':>9} {'Ed25519/s':>10} {'both/s':>9} {'RSA ms':>8} {'x OpenSSL':>10}"
    )
    results = {"openssl_rsa_per_s": openssl, "sizes": {}}
    for size in (2 * 1024, 100 * 1024):
        m = message(size)
        r = rate(lambda m=m: sign(m, [rsa_key]), seconds)
        e = rate(lambda m=m: sign(m, [ed_key]), seconds)
        b = rate(lambda m=m: sign(m, [rsa_key, ed_key]), seconds)
        ratio = openssl / r
        results["sizes"][size] = {
            "rsa_per_s": r,
            "ed25519_per_s": e,
            "both_per_s": b,
            "rsa_ratio_to_openssl": ratio,
        }
        print(
            f"{size // 1024:>5}KB {r:>9,.0f} {e:>10,.0f} {b:>9,.0f} {1000 / r:>8.3f} {ratio:>9.2f}x"
        )
    memory = peak_memory_25mb()
    results["memory_25mb"] = memory
    print(
        f"25 MB message: peak RSS {memory['rss_peak_mb']:.0f} MB, signing added "
        f"{memory['signing_extra_mb']:.0f} MB over the {memory['rss_before_mb']:.0f} MB "
        f"process holding it"
    )
    print(f"(one core, {resource.getpagesize()}-byte pages; goal: RSA 2 KB at or under 1.5x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    main(parser.parse_args().seconds)
