"""The README's code blocks are marked: each one runs in the README test or says why not."""

from __future__ import annotations

import pytest

from shared.testing import ROOT
from tests.helpers.readme import ReadmeError, blocks

MARKED = """Intro.

<!-- test: one -->
```sh
echo one
```

A diagram is prose:

```
a --> b
```

<!-- skip: two — needs a Docker engine -->
```python
print(2)
```
"""


def test_marked_blocks_are_found_in_order_with_their_reasons() -> None:
    """Marked blocks come back in order with name, kind, language and code, a skip with its reason;
    an unmarked block without a language is prose."""
    found = blocks(MARKED)
    assert [(b.name, b.kind, b.language, b.code) for b in found] == [
        ("one", "test", "sh", "echo one"),
        ("two", "skip", "python", "print(2)"),
    ]
    assert found[1].note == "needs a Docker engine"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("```sh\necho unmarked\n```\n", "not marked"),
        ("<!-- skip: x -->\n```sh\necho\n```\n", "needs a reason"),
        ("<!-- test: x -->\nsome prose\n```sh\necho\n```\n", "not before a block"),
        ("<!-- test: x -->\n```sh\na\n```\n<!-- test: x -->\n```sh\nb\n```\n", "used twice"),
        ("<!-- test: x -->\n```\ndiagram\n```\n", "no code"),
    ],
)
def test_what_is_refused(text: str, problem: str) -> None:
    """An unmarked code block, a skip without a reason, a mark not right before its block, a name
    used twice, or a marked block that is not code is an error."""
    with pytest.raises(ReadmeError, match=problem):
        blocks(text)


def test_the_readme_parses() -> None:
    """The README itself: every block marked (the README test checks each one's output)."""
    names = [b.name for b in blocks((ROOT / "README.md").read_text())]
    assert names[0] == "quick-start"
