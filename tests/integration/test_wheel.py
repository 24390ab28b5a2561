"""bulkmail installed as a user installs it: the wheel, in a fresh venv, used from an empty folder.

The rest of the suite runs against the editable checkout, where ``migrations/`` and
``templates/`` sit beside the code whether packaging ships them or not. This test builds the
wheel from a copy of the working tree (as ``pip install .`` or pipx would), installs it into a
venv without the system's site-packages, and runs ``init``, ``demo`` and a real send to an SMTP
peer on loopback from a folder that has nothing of the checkout in it.
"""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkmail.peers.smtp import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a wheel build and a venv

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "*.db", "*.db-wal", "*.db-shm", "demo-out", "bench-out", "keys",
)  # fmt: skip


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no bulkmail variables, no PYTHONPATH to the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BULKMAIL_", "PYTHON"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built like ``pip install .`` builds it (isolated, from a copy of the tree)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    init = src / "templates" / "__init__.py"  # a used checkout has bytecode beside the data
    py_compile.compile(str(init), cfile=str(init.parent / "__pycache__" / "__init__.pyc"))
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist")]
    _run([*cmd, str(src)], work, _clean_env())
    (built,) = (work / "dist").glob("bulkmail-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its dependencies installed."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", str(root)], root.parent, _clean_env())
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    _run(pip, root.parent, _clean_env(), timeout=600)
    return root / "bin"


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "empty"
    folder.mkdir()
    yield folder


def test_wheel_carries_every_package_migration_and_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in names if n.endswith(".pyc")]
    for path in (ROOT / "bulkmail").rglob("*"):  # every package (listed in pyproject.toml)
        if path.is_file() and "__pycache__" not in path.parts:  # and data file, like *.j2
            assert f"{path.relative_to(ROOT).as_posix()}" in names
    for top, package in (
        ("migrations", "bulkmail/migrations"),
        ("templates", "bulkmail/templates"),
    ):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert f"{package}/{path.relative_to(ROOT / top).as_posix()}" in names


def test_init_demo_and_a_send_from_an_empty_folder(venv: Path, empty: Path) -> None:
    bulkmail = str(venv / "bulkmail")
    env = _clean_env(BULKMAIL_SECRET="wheel-test-secret-0123456789")

    out = _run([bulkmail, "init"], empty, env)
    assert "schema revision" in out
    database = empty / "bulkmail.db"
    assert database.stat().st_mode & 0o777 == 0o600

    _run([bulkmail, "demo"], empty, env)
    assert len(list((empty / "demo-out" / "mail").glob("*.eml"))) == 200

    with SmtpServer("127.0.0.1") as peer:
        keygen = ["dkim", "keygen", "--domain", "news.test", "--selector", "s1", "--out", "keys"]
        _run([bulkmail, *keygen], empty, env)
        (empty / "bulkmail.toml").write_text(
            f"""\
[database]
url = "sqlite:///bulkmail.db"
[sender]
helo = "mail.news.test"
return_path_domain = "bounces.news.test"
[dkim]
domain = "news.test"
selector = "s1"
key_file = "keys/s1._domainkey.news.test.pem"
[routes]
"example.test" = "127.0.0.1:{peer.port}"
""",
            encoding="utf-8",
        )
        (empty / "people.csv").write_text(
            "email,name\nann@example.test,Ann\nbob@example.test,Bob\n", encoding="utf-8"
        )
        _run([bulkmail, "lists", "create", "news"], empty, env)
        _run([bulkmail, "subscribers", "import", "--list", "news", "people.csv"], empty, env)
        create = ["campaigns", "create", "--name", "May", "--list", "news", "--template"]
        _run([bulkmail, *create, "newsletter", "--subject", "Hi {{ subscriber.name }}",
              "--from", "News <news@news.test>"], empty, env)  # fmt: skip
        _run([bulkmail, "campaigns", "send", "1", "--wait"], empty, env)
        assert peer.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in peer.messages) == ["ann@example.test", "bob@example.test"]
    assert all(b"DKIM-Signature:" in m.data for m in peer.messages)
