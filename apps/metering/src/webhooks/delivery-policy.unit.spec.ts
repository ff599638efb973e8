import { checkEndpointUrl, checkUrlShape, isPrivateAddress, pinnedLookup, retryDelayMs } from './delivery-policy';

describe('webhook delivery policy', () => {
  it('backs off exponentially with jitter, capped', () => {
    const p = { retryBaseMs: 1000, retryMaxMs: 60_000 };
    expect(retryDelayMs(1, p, () => 0)).toBe(500);
    expect(retryDelayMs(1, p, () => 1)).toBe(1000);
    expect(retryDelayMs(4, p, () => 0.5)).toBe(6000);
    expect(retryDelayMs(40, p, () => 1)).toBe(60_000);
  });

  it('knows loopback, link-local, private, CGNAT and unique-local addresses from public ones', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1']) {
      expect([ip, isPrivateAddress(ip)]).toEqual([ip, true]);
    }
    for (const ip of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '172.32.0.1']) expect([ip, isPrivateAddress(ip)]).toEqual([ip, false]);
  });

  it('in production: https only, and no host resolving to a private address unless allowed', async () => {
    const prod = { production: true, allowPrivate: false };
    const resolve = async (host: string) => (host === 'internal.example' ? ['10.0.0.5'] : ['93.184.216.34']);
    expect(await checkEndpointUrl('http://hooks.example/x', prod, resolve)).toBe('must be https in production');
    expect(await checkEndpointUrl('https://hooks.example/x', prod, resolve)).toBeNull();
    expect(await checkEndpointUrl('https://internal.example/x', prod, resolve)).toMatch(/private address \(10\.0\.0\.5\)/);
    expect(await checkEndpointUrl('https://127.0.0.1/x', prod, resolve)).toMatch(/private address/);
    expect(await checkEndpointUrl('https://[::1]/x', prod, resolve)).toMatch(/private address/);
    expect(await checkEndpointUrl('https://internal.example/x', { production: true, allowPrivate: true }, resolve)).toBeNull();
  });

  it('in development any http(s) URL, nothing else', async () => {
    const dev = { production: false, allowPrivate: false };
    expect(await checkEndpointUrl('http://127.0.0.1:9000/hooks', dev)).toBeNull();
    expect(await checkEndpointUrl('ftp://example.com/', dev)).toBe('must be an http(s) URL');
    expect(await checkEndpointUrl('not a url', dev)).toBe('must be an absolute http(s) URL');
    expect(await checkEndpointUrl('https://user:pw@example.com/', dev)).toBe('must not carry credentials');
  });

  it('at delivery the connection resolves once, is refused on any private address, and goes only to the addresses checked (DNS rebinding)', async () => {
    // A name that answered a public address when the endpoint was created and a private one now.
    const answers = [['93.184.216.34'], ['127.0.0.1'], ['93.184.216.34', '10.0.0.7']];
    let asked = 0;
    const lookup = pinnedLookup(async () => answers[asked++]!);
    const call = (all: boolean) =>
      new Promise<{ err: (Error & { code?: string }) | null; result: unknown }>((resolve) =>
        (lookup as unknown as (h: string, o: { all: boolean }, cb: (err: Error | null, result?: unknown) => void) => void)('hooks.example', { all }, (err, result) => resolve({ err, result })));
    expect(await call(true)).toEqual({ err: null, result: [{ address: '93.184.216.34', family: 4 }] });
    const rebound = await call(false);
    expect([rebound.err?.code, rebound.err?.message]).toEqual(['EPRIVATEADDRESS', expect.stringContaining('private address (127.0.0.1)')]);
    expect((await call(true)).err?.message).toContain('10.0.0.7');
    expect(asked).toBe(3);
    // What the lookup never sees (an IP literal) is checked on the URL itself.
    expect(checkUrlShape('https://169.254.169.254/latest', { production: true, allowPrivate: false })).toMatch(/private address/);
    expect(checkUrlShape('https://169.254.169.254/latest', { production: true, allowPrivate: true })).toBeNull();
  });
});
