"""The layers: shared/ and the hato CLI import no service, and no service imports another
(they talk over the broker), so each can be built, tested and scaled alone."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_shared_and_the_cli_import_no_service() -> None:
    """Not even the bounce library: it lives in shared/bounces."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for top in ("shared", "hato")
        for path in sorted((ROOT / top).rglob("*.py"))
        for name in _imports(path)
        if name == "services" or name.startswith("services.")
    ]
    assert not offenders, offenders


def test_no_service_imports_another() -> None:
    """ingest, signer, dispatcher and bounce share only shared/."""
    offenders = []
    for service in sorted(p for p in (ROOT / "services").iterdir() if p.is_dir()):
        for path in sorted(service.rglob("*.py")):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service.name:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders
