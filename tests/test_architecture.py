"""The domain never imports a chat library: only bot/ adapters may."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAT_LIBS = ("telegram", "slack_bolt", "slack_sdk", "linebot")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["handlers", "knowledge", "scheduler", "db"])
def test_domain_packages_do_not_import_chat_libraries(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for path in (ROOT / package).rglob("*.py")
        for mod in imported_modules(path)
        if mod.split(".")[0] in CHAT_LIBS
    ]
    assert offenders == []


def test_the_guard_sees_real_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from telegram import Bot\nimport slack_bolt.app\n", encoding="utf-8")
    assert {"telegram", "slack_bolt.app"} <= imported_modules(sample)
