#!/usr/bin/env node
// The demo org and API key that `npm run up` and docker compose's one-shot `init` service create, and the curl that
// shows a person how to use them. Run alone (the compose service), it waits for metering, creates them and prints
// the console link, the key and the curl: METERING_URL (default http://127.0.0.1:8081), TOLLGATE_ADMIN_TOKEN,
// TOLLGATE_PROFILE, and the addresses to print, PUBLIC_GATEWAY_URL and PUBLIC_METERING_URL.
const demos = {
  trackyard: { plan: 'starter', curl: (g, k) => `curl -i -X POST ${g}/api/external/v1/search -H "Authorization: Bearer ${k}" -H "Content-Type: application/json" -d '{"query":"upbeat music"}'` },
  beatpass: { plan: 'standard', curl: (g, k) => `curl -i ${g}/api/v1/tracks -H "Authorization: Bearer ${k}"` },
  trakt: { plan: 'standard', curl: (g, k) => `curl -i ${g}/shows/trending -H "trakt-api-key: ${k}"` },
  trace: { plan: 'standard', topUp: 100, curl: (g, k) => `curl -i ${g}/v1/companies/c_0042 -H "Authorization: Bearer ${k}"` },
};

/** Creates org "demo" on the profile's demo plan (kept if it exists) and a new key for it. */
async function createDemo({ meteringUrl, adminToken, profile }) {
  const admin = async (method, path, body) => {
    const res = await fetch(`${meteringUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  const d = demos[profile] || demos.trackyard;
  const org = await admin('POST', '/admin/orgs', { id: 'demo', name: 'Demo org', plan: d.plan });
  if (org.status !== 201 && org.status !== 409) throw new Error(`creating the demo org failed (${org.status}): ${JSON.stringify(org.body)}`);
  // The same idempotency key every time: the welcome credits are granted once, however often this runs.
  if (d.topUp) await admin('POST', '/admin/orgs/demo/credits', { amount: d.topUp, reason: 'demo credits', idempotency_key: 'demo-welcome' });
  const key = await admin('POST', '/admin/orgs/demo/keys', { name: `demo ${new Date().toISOString()}` });
  if (key.status !== 201) throw new Error(`creating a demo key failed (${key.status}): ${JSON.stringify(key.body)}`);
  return { plan: d.plan, key: key.body.key, curl: (gatewayUrl) => d.curl(gatewayUrl, key.body.key) };
}

async function waitReady(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`metering is not ready at ${url} after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

module.exports = { createDemo, demos };

if (require.main === module) {
  const env = process.env;
  const meteringUrl = (env.METERING_URL || 'http://127.0.0.1:8081').replace(/\/+$/, '');
  const profile = env.TOLLGATE_PROFILE || 'trackyard';
  (async () => {
    if (!env.TOLLGATE_ADMIN_TOKEN) throw new Error('set TOLLGATE_ADMIN_TOKEN');
    await waitReady(meteringUrl, 120_000);
    const demo = await createDemo({ meteringUrl, adminToken: env.TOLLGATE_ADMIN_TOKEN, profile });
    const gateway = env.PUBLIC_GATEWAY_URL || 'http://127.0.0.1:8080';
    const metering = env.PUBLIC_METERING_URL || meteringUrl;
    process.stdout.write(`
Tollgate is up: profile ${profile}, in front of ${env.UPSTREAM_URL || 'the example upstream'}.

  Console   ${metering}/console#/orgs/demo (sign in with your TOLLGATE_ADMIN_TOKEN)
  Demo key  ${demo.key} (org "demo", plan ${demo.plan})

Try:

  ${demo.curl(gateway)}
`);
  })().catch((e) => {
    process.stderr.write(`demo: ${e.message}\n`);
    process.exit(1);
  });
}
