"""``bulkmail demo``: a whole campaign on this machine, local servers standing in for the world.

It builds a demo folder (config, SQLite database, a fresh DKIM key), starts a DNS server on
127.0.0.1 answering for the demo domains (MX records pointing at 127.0.0.2-127.0.0.5, one
domain with only an A record, the DKIM key's TXT record) and a capture SMTP server on each of
those addresses, then runs the ordinary commands — init, lists create, subscribers import,
campaigns create, campaigns send --wait — through the same code an operator uses.
Delivered messages land as .eml files in ``<out>/mail/``.

Everything it prints can be pasted: each command is echoed shell-quoted with the demo's
``--config``, and the demo's HMAC secret is kept in ``<out>/demo.env`` (it signs the unsubscribe
links in the .eml files, so ``bulkmail serve`` needs the same one to answer them). The folder holds
subscriber addresses and a private key, so everything in it is created owner-only (umask 077).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from bulkmail.errors import InputError
from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.peers.smtp import SmtpServer, free_port
from bulkmail.resources import templates_dir
from bulkmail.signing.keys import dns_txt_value, generate_private_key, load_private_key, split_txt

SAMPLE = templates_dir() / "sample" / "subscribers.csv"  # bundled: wheel or checkout
MX_HOSTS = {
    "mx1.example.test": "127.0.0.2",
    "mx2.example.test": "127.0.0.3",
    "mx.post.test": "127.0.0.4",
    "inbox.test": "127.0.0.5",
}
SENDING_DOMAIN = "news.test"
MARKER = ".bulkmail-demo"
# Not BULKMAIL_SECRET: sourcing demo.env never replaces an operator's real key.
SECRET_ENV = "BULKMAIL_DEMO_SECRET"
ENV_FILE = "demo.env"
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8080  # the unsubscribe endpoint's port when free, else any free one


def demo_zone(public_txt: str) -> Zone:
    zone = Zone()
    for domain in ("example.test", "mail.example.test"):
        zone.add(domain, "MX", "10 mx1.example.test.")
        zone.add(domain, "MX", "20 mx2.example.test.")
    zone.add("post.test", "MX", "10 mx.post.test.")
    for host, ip in MX_HOSTS.items():
        zone.add(host, "A", ip)  # inbox.test has no MX: delivered to its A record (implicit MX)
    zone.add(f"s1._domainkey.{SENDING_DOMAIN}", "TXT", split_txt(public_txt))
    zone.add(SENDING_DOMAIN, "MX", f"10 mx1.{SENDING_DOMAIN}.")
    zone.add(f"mx1.{SENDING_DOMAIN}", "A", "127.0.0.2")
    return zone


def write_config(out: Path, dns_port: int, smtp_port: int, serve_port: int) -> Path:
    config = out / "bulkmail.toml"
    config.write_text(
        f"""\
# Written by 'bulkmail demo': everything points at servers on this machine.
[database]
url = "sqlite:///{(out / "demo.db").resolve()}"

[sender]
helo = "mail.{SENDING_DOMAIN}"
port = {smtp_port}
tls = "opportunistic"
return_path_domain = "bounces.{SENDING_DOMAIN}"

[dns]
nameservers = ["127.0.0.1"]
port = {dns_port}
timeout = 2.0

[dkim]
domain = "{SENDING_DOMAIN}"
selector = "s1"
key_file = "keys/s1.pem"

[limits.default]
connections = 4
messages_per_connection = 50

[retry]
intervals = ["5s", "10s"]
max_age = "1h"

[unsubscribe]
url = "http://{SERVE_HOST}:{serve_port}/unsubscribe"
mailto = "unsubscribe@{SENDING_DOMAIN}"
secret_env = "{SECRET_ENV}"
""",
        encoding="utf-8",
    )
    return config


def serve_port() -> int:
    """8080 if nothing listens there, else a free port: the demo's links must be servable."""
    with socket.socket() as probe:
        try:
            probe.bind((SERVE_HOST, SERVE_PORT))
        except OSError:
            return free_port((SERVE_HOST,))
    return SERVE_PORT


def command_line(config: Path, *args: str) -> str:
    """``args`` as a shell line an operator can paste: quoted, with the demo's ``--config``."""
    return shlex.join(["bulkmail", "--config", str(config), *args])


def _run(config: Path, *args: str) -> None:
    from bulkmail.cli.main import cli

    click.echo(click.style(f"$ {command_line(config, *args)}", bold=True), err=True)
    try:
        cli.main(args=["--config", str(config), *args], prog_name="bulkmail", standalone_mode=False)
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise


@contextmanager
def _owner_only() -> Iterator[None]:
    """Files made inside the block (config, database, key, .eml files) are mode 0600/0700."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@contextmanager
def _secret_in_env(value: str) -> Iterator[None]:
    """The demo's secret in the environment for the commands it runs, then as it was."""
    previous = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = previous


def prepare_folder(out: Path) -> None:
    """An empty demo folder (an old demo folder is replaced; anything else is refused)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise InputError(
                f"--out {out}: folder exists and is not a bulkmail demo folder; "
                "choose a new or empty folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    (out / "keys").mkdir()
    (out / "mail").mkdir()
    (out / MARKER).write_text("made by 'bulkmail demo'; it may delete this folder\n")


def run_demo(out_dir: str) -> None:
    """Build ``out_dir``, send the demo campaign through local servers, and print where the
    mail is and the line that serves its unsubscribe links."""
    out = Path(out_dir).resolve()
    with _owner_only():
        prepare_folder(out)
        pem = generate_private_key("rsa", 2048)
        key_path = out / "keys" / "s1.pem"
        key_path.write_bytes(pem)
        key_path.chmod(0o600)
        secret = secrets.token_hex(32)
        env_file = out / ENV_FILE
        env_file.write_text(
            f"# The demo's HMAC key for its unsubscribe links: . {shlex.quote(str(env_file))}\n"
            f"export {SECRET_ENV}={secret}\n",
            encoding="utf-8",
        )
        env_file.chmod(0o600)
        zone = demo_zone(dns_txt_value(load_private_key(pem)))
        port = free_port(tuple(MX_HOSTS.values()))
        web_port = serve_port()
        with DnsServer(zone) as dns, _secret_in_env(secret):
            servers = [
                SmtpServer(ip, port, maildir=out / "mail").start() for ip in MX_HOSTS.values()
            ]
            try:
                config = write_config(out, dns.port, port, web_port)
                _send_campaign(config)
            finally:
                for server in servers:
                    server.stop()
    received = sum(len(s.messages) for s in servers)
    example = min((out / "mail").glob("*.eml"), default="")
    click.echo(
        f"\n{received} messages delivered to the capture servers; "
        f"open them in {out / 'mail'}/ (e.g. {example})"
    )
    click.echo(f"config and database: {config}, {out / 'demo.db'}")
    click.echo(f"the demo's secret is in {env_file}; to answer the unsubscribe links in the mail:")
    serve = command_line(config, "serve", "--host", SERVE_HOST, "--port", str(web_port))
    click.echo(f"  . {shlex.quote(str(env_file))} && {serve}")


def _send_campaign(config: Path) -> None:
    """The commands an operator would type, run through the ordinary CLI."""
    _run(config, "init")
    _run(config, "lists", "create", "demo")
    _run(config, "subscribers", "import", "--list", "demo", str(SAMPLE))
    _run(
        config,
        "campaigns",
        "create",
        "--name",
        "Demo newsletter",
        "--list",
        "demo",
        "--subject",
        "Hello {{ subscriber.name or 'there' }}: the demo newsletter",
        "--from",
        f"Demo News <news@{SENDING_DOMAIN}>",
        "--template",
        "newsletter",
    )
    _run(config, "campaigns", "send", "1", "--wait")
