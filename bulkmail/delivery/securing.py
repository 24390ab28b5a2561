"""Routes under the recipient domain's published TLS policy (MTA-STS, RFC 8461 section 4).

``SecureRouter`` wraps ``MxResolver``: the route of a domain with a policy in force carries a
``Requirement`` on each MX host, which the transport obeys (``Connector._open_required``):

- mode ``enforce`` (and ``[sender] mta_sts = "enforce"``): MX hosts outside the policy's
  ``mx`` patterns are dropped; none left: the route's reply defers the delivery (451 4.7.5,
  the policy named) and no connection is made. The rest must offer STARTTLS with a
  certificate valid for the MX name, or the attempt is deferred, never sent in plaintext.
- mode ``testing`` (or any policy under ``"testing-only"``): every MX host is kept and the
  delivery goes as before; what the policy would have refused is recorded per delivery.
- mode ``none`` or no policy: the route is the resolver's, untouched.

The site of a policy-bound route gets a suffix (``#mta-sts-enforce``): its sessions are
opened under the policy, so they are never shared with a domain on the same MX hosts that
has no policy, and a policy failure does not mark the other domains' site as down. The
price: such domains count against their own connection slots.

A route is computed once per claimed batch per domain; the policy comes from ``MtaSts``'s
cache (a dictionary lookup and the cached TXT answer), so this costs nothing per message.
Static routes ([routes]) and address literals are the operator's choice: no policy applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bulkmail.delivery.classify import Reply
from bulkmail.delivery.dane import DANE_PREFIX, usable
from bulkmail.delivery.mtasts import MtaSts
from bulkmail.delivery.routing import MxHost, MxResolver, Route
from bulkmail.delivery.stspolicy import POLICY_PREFIX
from bulkmail.delivery.tlspolicy import Requirement

__all__ = ["DANE_PREFIX", "POLICY_PREFIX", "SecureRouter"]


class SecureRouter:
    """MX routes with the recipient domains' DANE records and MTA-STS policies applied."""

    def __init__(
        self,
        resolver: MxResolver,
        mta_sts: MtaSts | None,
        setting: str = "enforce",
        *,
        dane: bool = False,
        port: int = 25,
        per_domain: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.resolver = resolver
        self.mta_sts = mta_sts
        self.setting = setting
        self.dane = dane
        self.port = port  # the delivery port: TLSA records live at _<port>._tcp.<mx host>
        self.per_domain = dict(per_domain or {})  # domain -> (mta_sts, dane); "" = default

    def settings_for(self, domain: str) -> tuple[str, bool]:
        """([sender] mta_sts, dane on) for ``domain``, after its [limits."domain"] override."""
        override = self.per_domain.get(domain)
        if override is None:
            return self.setting, self.dane
        mta_sts, dane = override
        return mta_sts or self.setting, (dane == "on") if dane else self.dane

    async def route(self, domain: str) -> Route:
        route = await self.resolver.route(domain)
        if route.reply is not None or route.domain.startswith("["):
            return route
        if self.resolver.is_static(route.domain):
            return route
        setting, dane_on = self.settings_for(route.domain)
        dane = await self._dane(route) if dane_on else {}
        if self.mta_sts is not None and setting != "off":
            route = await self._mta_sts(route, dane, setting == "testing-only")
        if not dane or route.reply is not None:
            return route
        hosts = tuple(
            replace(h, requirement=dane[h.name]) if h.name in dane else h for h in route.hosts
        )
        return Route(route.domain, hosts, f"{route.site}#dane")

    async def _dane(self, route: Route) -> dict[str, Requirement]:
        """MX host -> its DANE requirement, for the hosts with usable validated TLSA records
        (or whose TLSA lookup failed: then nothing can be sent until it works). Only under an
        MX answer the resolver validated: an unsigned MX could name an attacker's host."""
        status, _, secure = await self.resolver.secure_lookup(route.domain, "MX")
        if status != "ok" or not secure:
            return {}
        names = sorted({h.name for h in route.hosts})
        # One after the other: cached (the usual case) each costs a dictionary lookup, where
        # gather's tasks cost ~45 us a host; cold, a few RTTs once per TTL.
        found = [await self.resolver.secure_lookup(f"_{self.port}._tcp.{n}", "TLSA") for n in names]
        out = {}
        for name, (status, records, secure) in zip(names, found, strict=True):
            label = f"{DANE_PREFIX}{name}"
            if status == "tempfail":
                out[name] = Requirement("dane", True, True, f"{label}: the lookup failed")
            elif status == "ok" and secure and usable(records):
                out[name] = Requirement("dane", True, True, label, usable(records))
        return out

    async def _mta_sts(
        self, route: Route, dane: dict[str, Requirement], testing_only: bool
    ) -> Route:
        """The route under the domain's MTA-STS policy; hosts with DANE are DANE's (RFC 8461
        2: DANE takes precedence)."""
        assert self.mta_sts is not None
        cached = await self.mta_sts.policy(route.domain)
        if cached is None or cached.policy.mode == "none":
            return route
        policy = cached.policy
        enforce = policy.mode == "enforce" and not testing_only
        label = f"{POLICY_PREFIX}{route.domain} (id {cached.policy_id}, mode {policy.mode})"
        hosts: list[MxHost] = []
        for host in route.hosts:
            if host.name in dane:
                hosts.append(host)
                continue
            matched = policy.allows(host.name)
            if enforce and not matched:
                continue
            hosts.append(replace(host, requirement=Requirement("mta-sts", enforce, matched, label)))
        if not hosts:
            names = ", ".join(sorted({h.name for h in route.hosts}))
            text = f"{label}: no MX host matches its mx {', '.join(policy.mx)} (MX: {names})"
            return Route(route.domain, (), route.site, Reply(451, text, "4.7.5"))
        if enforce:
            site = ",".join(sorted({h.name for h in hosts})) + "#mta-sts-enforce"
        else:
            site = route.site + "#mta-sts-testing"
        return Route(route.domain, tuple(hosts), site)

    def reshuffle(self, hosts: tuple[MxHost, ...]) -> tuple[MxHost, ...]:
        return self.resolver.reshuffle(hosts)
