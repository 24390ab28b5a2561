"""Config loading: the contract keys, defaults, environment overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmail.config import load_settings
from bulkmail.errors import ConfigError

FULL = """
[database]
url = "sqlite:///bulkmail.db"
[sender]
helo = "mail.news.example"
mode = "mx"
port = 25
tls = "opportunistic"
return_path_domain = "bounces.news.example"
[relay]
host = "smtp.provider.example"
port = 587
security = "starttls"
username = "news"
password_env = "BULKMAIL_RELAY_PASSWORD"
ca_file = ""
[dns]
nameservers = []
port = 53
timeout = 5.0
[dkim]
domain = "news.example"
selector = "s1"
key_file = "keys/s1.pem"
[limits.default]
connections = 10
messages_per_connection = 100
rate = 0
[limits."gmail.com"]
connections = 5
[retry]
intervals = ["30m", "1h", "2h", "4h"]
max_age = "5d"
[unsubscribe]
url = "https://news.example/unsubscribe"
mailto = "unsubscribe@news.example"
secret_env = "BULKMAIL_SECRET"
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bulkmail.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL))
    assert s.sender.helo == "mail.news.example"
    assert s.relay.port == 587
    assert s.dns.timeout == 5.0
    assert s.dkim.selector == "s1"
    assert s.retry.intervals == ("30m", "1h", "2h", "4h")
    assert s.path(s.dkim.key_file) == tmp_path.resolve() / "keys/s1.pem"


def test_per_domain_limits_inherit_the_default(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL))
    gmail = s.limits_for("Gmail.com")
    assert gmail.connections == 5
    assert gmail.messages_per_connection == 100
    assert s.limits_for("other.example").connections == 10


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BULKMAIL_CONFIG", raising=False)
    assert load_settings().database.url == f"sqlite:///{tmp_path.resolve() / 'bulkmail.db'}"


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_database_url_from_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKMAIL_DATABASE_URL", "sqlite:///other.db")
    monkeypatch.chdir(tmp_path)  # a relative path there is relative to the current folder
    expected = f"sqlite:///{tmp_path.resolve() / 'other.db'}"
    assert load_settings(write(tmp_path, FULL)).database.url == expected


def test_config_from_bulkmail_config_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKMAIL_CONFIG", str(write(tmp_path, "[sender]\nhelo = 'x.example'\n")))
    assert load_settings().sender.helo == "x.example"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[sender]\nhelo = 5\n", "sender.helo: expected str, got int 5"),
        ("[sender]\nhelos = 'x'\n", "sender.helos: unknown key"),
        ("[senders]\n", "[senders]: unknown section"),
        ("[sender]\nmode = 'carrier-pigeon'\n", "sender.mode: must be one of mx, relay"),
        ("[sender]\ntls = 'maybe'\n", "sender.tls: must be one of"),
        ("[sender]\nport = -1\n", "sender.port: must not be negative"),
        ("[sender]\nmode = 'relay'\n", "relay.host: required when"),
        ("[retry]\nintervals = ['30 parsecs']\n", "retry.intervals[0]"),
        ("[retry]\nmax_age = 'soon'\n", "retry.max_age"),
        ("[dns]\nnameservers = '127.0.0.1'\n", "dns.nameservers: expected list of strings"),
        ("[limits.default]\nconnections = 0\n", "limits.default.connections: must be at least 1"),
        ("[limits.'a.example']\nrate = 'fast'\n", "limits.a.example.rate: expected float"),
        ("[dkim]\nkey_file = 'k.pem'\n", "dkim: key_file needs domain and selector"),
        ("not toml at all [", "not valid TOML"),
        ("[schedule]\ntimezone = 'Mars/Olympus'\n", "schedule.timezone: unknown time zone"),
        ("[schedule]\ngrace = 'a while'\n", "schedule.grace"),
        ("[timeouts]\ndata_end = 0\n", "timeouts.data_end: must be more than 0 seconds"),
    ],
)
def test_bad_config_gives_one_line_naming_file_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert message in text
    assert text.startswith(str(path))
    assert "\n" not in text


def test_secret_comes_from_the_named_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(write(tmp_path, "[unsubscribe]\nsecret_env = 'MY_SECRET'\n"))
    monkeypatch.delenv("MY_SECRET", raising=False)
    with pytest.raises(ConfigError, match="MY_SECRET is not set"):
        s.secret()
    monkeypatch.setenv("MY_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        s.secret()
    monkeypatch.setenv("MY_SECRET", "a-long-enough-s3cret")
    assert s.secret() == b"a-long-enough-s3cret"
