import { clientIp } from './client-ip';

describe('clientIp', () => {
  const proxies = ['10.0.0.5', '192.168.0.0/16'];

  it('given an IPv4-mapped IPv6 peer, when no proxy is involved, then the plain IPv4 address is used', () => {
    expect(clientIp('::ffff:198.51.100.7', undefined, [])).toBe('198.51.100.7');
  });

  it('given a spoofed X-Forwarded-For from an untrusted peer, when the client is resolved, then the header is ignored', () => {
    expect(clientIp('198.51.100.7', '1.1.1.1', proxies)).toBe('198.51.100.7');
    expect(clientIp('198.51.100.7', '1.1.1.1', [])).toBe('198.51.100.7');
  });

  it('given a trusted proxy peer, when the client is resolved, then the right-most forwarded address is the client', () => {
    expect(clientIp('::ffff:10.0.0.5', '203.0.113.9', proxies)).toBe('203.0.113.9');
  });

  it('given a forged entry left of the real client, when a trusted proxy forwards, then the forged entry is ignored', () => {
    expect(clientIp('10.0.0.5', '6.6.6.6, 203.0.113.9', proxies)).toBe('203.0.113.9');
  });

  it('given a chain of trusted proxies (a CIDR block among them), when the client is resolved, then they are skipped', () => {
    expect(clientIp('10.0.0.5', '203.0.113.9, 192.168.4.2, 10.0.0.5', proxies)).toBe('203.0.113.9');
  });

  it('given a chain made only of trusted proxies, when the client is resolved, then the farthest one is the client', () => {
    expect(clientIp('10.0.0.5', '192.168.4.2, 192.168.4.3', proxies)).toBe('192.168.4.2');
  });

  it('given addresses with ports and IPv6 brackets, when forwarded by a trusted proxy, then the bare address is used', () => {
    expect(clientIp('10.0.0.5', '203.0.113.9:51234', proxies)).toBe('203.0.113.9');
    expect(clientIp('10.0.0.5', '[2001:DB8::1]:443', proxies)).toBe('2001:db8::1');
  });

  it('given a malformed entry where the client should be, when forwarded by a trusted proxy, then the peer is used', () => {
    expect(clientIp('10.0.0.5', 'not-an-ip', proxies)).toBe('10.0.0.5');
    expect(clientIp('10.0.0.5', '', proxies)).toBe('10.0.0.5');
  });

  it('given an IPv6 proxy block, when its member forwards, then the header is believed', () => {
    expect(clientIp('fd00::17', '203.0.113.9', ['fd00::/8'])).toBe('203.0.113.9');
  });

  it('given unreadable entries in the proxy list, when a peer is checked, then they trust nobody', () => {
    expect(clientIp('10.0.0.5', '203.0.113.9', ['garbage', '10.0.0.0/99'])).toBe('10.0.0.5');
  });
});
