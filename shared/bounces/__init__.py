"""Reading bounces and complaints: ``parse`` turns a report (RFC 3464 DSN, ARF, the free-text
reports of real MTAs and providers) into findings per recipient, ``classify`` turns findings
into verdicts in Sisimai's reason vocabulary by the rules of ``reasons.toml``.

A library with no I/O: the bounce service applies its verdicts, ``hato bounce classify`` and
``bench/classify.py`` print and score them.
"""
