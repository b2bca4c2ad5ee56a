"""The bounce classifier against labelled corpora: precision and recall per reason and per
format, and how often the recipient, the status code and hard/soft come out right.

    python -m bench.classify [--corpus DIR ...] [--split dev|holdout] [--errors]

Two corpus layouts are read, both labelled with Sisimai's reason names (Hato's own):

- ``tests/corpus/bounces`` in this repository (the default): ``labels.tsv`` with file,
  format, recipient, status, reason, hard, ambiguous (``a|b`` for several recipients), the
  ``.eml`` files beside it;
- Sisimai-style corpora such as the 154 real bounces the team keeps beside the checkout in
  ``../shared/corpus/bounces``: ``labels.tsv`` with ``expected_reason``,
  ``expected_status``, ``expected_hardbounce`` ..., the files in ``eml/``. Their format is the
  file name's prefix (``lhost-postfix-13.eml`` → ``postfix``, ``rhost-google-07.eml`` →
  ``google``). A status marked ``status_is_sisimai_pseudo`` (Sisimai's X.0.9NN stand-in for a
  mail without a code) counts as right when its first digit is.

Each recipient of each message is one case; a message that is not a bounce is one case,
labelled ``not-a-bounce``. With ``--corpus`` given several times, each is measured in turn.

A corpus whose labels have a ``split`` column (``tests/corpus/heldout``) is measured whole, or
one part with ``--split``. ``--errors`` never lists the cases of the ``holdout`` part: they
are kept unseen so that their figures stay a true held-out measure.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from shared.bounces.classify import rules
from shared.bounces.parse import Kind, NotMail, parse

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "bounces"
SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "bounces"
NOT_A_BOUNCE = "not-a-bounce"


@dataclass(frozen=True, slots=True)
class Case:
    """One expected recipient (or one non-bounce message) and what the classifier made of it."""

    file: str
    format: str
    reason: str  # expected
    predicted: str
    recipient: str = ""  # expected address, when the corpus names it
    found: str = ""  # the recipient the classifier found ("" none)
    status: str = ""  # expected
    predicted_status: str = ""
    pseudo: bool = False  # the expected status is only a class (X.0.9NN)
    hard: str = ""  # expected "1", "0" or "" (not labelled)
    predicted_hard: bool = False
    held_out: bool = False  # in the part of a corpus whose errors are not shown

    @property
    def right(self) -> bool:
        return self.reason == self.predicted

    @property
    def recipient_right(self) -> bool | None:
        if self.reason == NOT_A_BOUNCE:
            return None
        if self.recipient:
            return self.found.lower() == self.recipient.lower()
        return bool(self.found)

    @property
    def status_right(self) -> bool | None:
        if not self.status or self.reason == NOT_A_BOUNCE:
            return None
        if self.pseudo:
            return self.predicted_status[:1] == self.status[:1]
        return self.predicted_status == self.status

    @property
    def hard_right(self) -> bool | None:
        if self.hard == "" or self.reason == NOT_A_BOUNCE:
            return None
        return self.predicted_hard == (self.hard == "1")


Prediction = tuple[str, str, str, bool]
NONE: Prediction = ("", "none", "", False)


def predict(path: Path) -> list[Prediction]:
    """(recipient, reason, status, hard) per recipient; one not-a-bounce row for the rest."""
    try:
        report = parse(path.read_bytes())
    except NotMail:
        return [("", NOT_A_BOUNCE, "", False)]
    if report.kind is Kind.NOT_A_BOUNCE or not report.findings:
        return [("", NOT_A_BOUNCE, "", False)]
    return [(v.recipient, v.reason, v.status, v.hard) for v in rules().classify(report)]


def _split(value: str | None, n: int) -> list[str]:
    parts = (value or "").split("|")
    return parts + [parts[-1]] * (n - len(parts)) if len(parts) < n else parts


def pair(
    predicted: list[Prediction], reasons: list[str], statuses: list[str], recipients: list[str]
) -> list[Prediction]:
    """Which prediction answers which expected recipient: by address where the corpus names
    it; where it does not (the shared corpus), by the expected status code, then by reason,
    so a report listing its recipients in another order than the labels is not scored wrong;
    what is left in order."""
    free = list(predicted)
    out: list[Prediction | None] = [None] * len(reasons)

    def take(i: int, field: int | None = None, value: str = "") -> None:
        """The first free prediction whose ``field`` is ``value`` (any, without a field)."""
        for p in free:
            if out[i] is None and (field is None or str(p[field]).lower() == value.lower()):
                out[i] = p
                free.remove(p)
                return

    named = [i for i in range(len(reasons)) if recipients[i]]
    unnamed = [i for i in range(len(reasons)) if not recipients[i]]
    for i in named:
        take(i, 0, recipients[i])
    if len(unnamed) > 1:
        for i in unnamed:
            if statuses[i]:
                take(i, 2, statuses[i])
        for i in unnamed:
            take(i, 1, reasons[i])
    for i in unnamed:
        take(i)
    return [p or NONE for p in out]


def format_of(file: str) -> str:
    """``lhost-postfix-13.eml`` → postfix; ``rhost-google-07.eml`` → google; rfc3464 ..."""
    stem = file.rsplit(".", 1)[0]
    parts = stem.split("-")
    if parts[0] in ("lhost", "rhost") and len(parts) > 2:
        return "-".join(parts[1:-1])
    if stem.startswith("is-not-bounce"):
        return NOT_A_BOUNCE
    return parts[0]


HOLDOUT = "holdout"


def evaluate(corpus: Path, split: str | None = None) -> list[Case]:
    cases: list[Case] = []
    with (corpus / "labels.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if split and row.get("split", "") != split:
                continue
            sisimai = "expected_reason" in row
            path = corpus / "eml" / row["file"] if sisimai else corpus / row["file"]
            predicted = predict(path)
            reasons = (row["expected_reason"] if sisimai else row["reason"]).split("|")
            n = len(reasons)
            statuses = _split(row.get("expected_status" if sisimai else "status"), n)
            hards = _split(row.get("expected_hardbounce" if sisimai else "hard"), n)
            recipients = _split(row.get("recipient", ""), n)
            pseudo = row.get("status_is_sisimai_pseudo") == "1"
            fmt = format_of(row["file"]) if sisimai else row.get("format") or format_of(row["file"])
            pairs = pair(predicted, reasons, statuses, recipients)
            for i, reason in enumerate(reasons):
                got = pairs[i]
                cases.append(
                    Case(
                        file=row["file"],
                        format=fmt,
                        reason=reason,
                        predicted=got[1],
                        recipient=recipients[i],
                        found=got[0],
                        status=statuses[i],
                        predicted_status=got[2],
                        pseudo=pseudo,
                        hard=hards[i] if reason != NOT_A_BOUNCE else "",
                        predicted_hard=got[3],
                        held_out=row.get("split") == HOLDOUT,
                    )
                )
    return cases


@dataclass(frozen=True, slots=True)
class Summary:
    cases: int
    reason: float
    recipient: float
    status: float
    hard: float
    false_bounces: int  # non-bounces taken for a bounce
    non_bounces: int


def _ratio(values: list[bool | None]) -> float:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else 1.0


def summarize(cases: list[Case]) -> Summary:
    non = [c for c in cases if c.reason == NOT_A_BOUNCE]
    return Summary(
        cases=len(cases),
        reason=_ratio([c.right for c in cases]),
        recipient=_ratio([c.recipient_right for c in cases]),
        status=_ratio([c.status_right for c in cases]),
        hard=_ratio([c.hard_right for c in cases]),
        false_bounces=sum(c.predicted != NOT_A_BOUNCE for c in non),
        non_bounces=len(non),
    )


def table(cases: list[Case], key: str) -> list[str]:
    """Precision and recall per reason, or accuracy per format."""
    lines = []
    if key == "reason":
        support = Counter(c.reason for c in cases)
        predicted = Counter(c.predicted for c in cases)
        right = Counter(c.reason for c in cases if c.right)
        lines.append(f"{'reason':<18} {'n':>4} {'precision':>10} {'recall':>8}")
        for reason in sorted(set(support) | set(predicted), key=lambda r: (-support[r], r)):
            p = right[reason] / predicted[reason] if predicted[reason] else 0.0
            r = right[reason] / support[reason] if support[reason] else 0.0
            lines.append(f"{reason:<18} {support[reason]:>4} {p:>10.2f} {r:>8.2f}")
        return lines
    groups: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        groups[c.format].append(c)
    lines.append(f"{'format':<18} {'n':>4} {'reason':>7} {'rcpt':>6} {'status':>7} {'hard':>6}")
    for fmt in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        s = summarize(groups[fmt])
        lines.append(
            f"{fmt:<18} {s.cases:>4} {s.reason:>7.2f} {s.recipient:>6.2f} {s.status:>7.2f} "
            f"{s.hard:>6.2f}"
        )
    return lines


def main(corpora: list[Path], show_errors: bool, split: str | None = None) -> None:
    for corpus in corpora:
        cases = evaluate(corpus, split)
        s = summarize(cases)
        part = f" ({split} part)" if split else ""
        print(f"{s.cases} recipients in {corpus}{part}")
        print("\n".join(table(cases, "reason")))
        print()
        print("\n".join(table(cases, "format")))
        print(
            f"\nreason {s.reason:.2f}  recipient {s.recipient:.2f}  status {s.status:.2f}  "
            f"hard/soft {s.hard:.2f}  non-bounces taken for bounces {s.false_bounces}"
            f"/{s.non_bounces}"
        )
        if show_errors:
            hidden = sum(c.held_out for c in cases)
            if hidden:
                print(f"  (the errors of {hidden} held-out cases are not listed)")
            for c in cases:
                if c.held_out:
                    continue
                wrong = []
                if not c.right:
                    wrong.append(f"reason {c.reason} got {c.predicted}")
                if c.status_right is False:
                    wrong.append(f"status {c.status} got {c.predicted_status or '-'}")
                if c.hard_right is False:
                    wrong.append(f"hard {c.hard} got {int(c.predicted_hard)}")
                if c.recipient_right is False:
                    wrong.append(f"recipient {c.recipient or '?'} got {c.found or '-'}")
                if wrong:
                    print(f"  {c.file}: {'; '.join(wrong)}")
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, action="append", help="a labelled corpus")
    parser.add_argument("--errors", action="store_true", help="list the cases got wrong")
    parser.add_argument(
        "--split", choices=("dev", HOLDOUT), help="measure one part of a corpus with a split column"
    )
    a = parser.parse_args()
    corpora = a.corpus or [DEFAULT_CORPUS]
    for corpus in corpora:
        if not (corpus / "labels.tsv").is_file():
            parser.error(f"no labelled corpus at {corpus} (it needs a labels.tsv)")
    main(corpora, a.errors, a.split)
