'use strict';
// The independent Ed25519 (and RSA) DKIM verifier of the suite: mailauth (npm), keys from the
// DNS server at 127.0.0.1:PORT (argv[2]). Reads one message on stdin and prints one line per
// signature: "<algorithm> <selector> <result> <comment>". Installed by
// scripts/install-test-peers.sh; tests/integration/test_dkim_verify.py runs it.
const { dkimVerify } = require('mailauth/lib/dkim/verify');
const dns = require('dns');

const resolver = new dns.promises.Resolver({ timeout: 5000, tries: 1 });
resolver.setServers([`127.0.0.1:${process.argv[2]}`]);
const chunks = [];
process.stdin.on('data', chunk => chunks.push(chunk));
process.stdin.on('end', async () => {
    const result = await dkimVerify(Buffer.concat(chunks), {
        resolver: (name, rrtype) => resolver.resolve(name, rrtype)
    });
    for (const r of result.results) {
        console.log([r.algo, r.selector, r.status.result, r.status.comment || ''].join(' '));
    }
});
