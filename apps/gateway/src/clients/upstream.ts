import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, ZlibOptions } from 'node:zlib';
import { Agent, request } from 'undici';

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Headers never forwarded in either direction (hop-by-hop, or Tollgate's own credentials). */
const hopByHop = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'host', 'content-length', 'authorization', 'trakt-api-key', 'x-forwarded-for',
]);

export function forwardableHeaders(headers: Record<string, string | string[] | undefined>, into: Record<string, string> = {}): Record<string, string> {
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || hopByHop.has(k)) continue;
    into[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return into;
}

/**
 * Largest body a priced answer may decompress to. Decoders stop at it (zlib's `maxOutputLength`), so a bomb (a
 * few KB inflating to a GiB) is refused while it is being inflated, never held in memory whole.
 */
export const maxDecodedBytes = 32 * 1024 * 1024;

const bounded: ZlibOptions = { maxOutputLength: maxDecodedBytes };
const decoders: Record<string, (b: Buffer) => Promise<Buffer>> = {
  gzip: (b) => promisify(gunzip)(b, bounded),
  'x-gzip': (b) => promisify(gunzip)(b, bounded),
  deflate: (b) => promisify(inflate)(b, bounded),
  br: (b) => promisify(brotliDecompress)(b, { maxOutputLength: maxDecodedBytes }),
};

/** An upstream answer the gateway will not hold: its body is larger than the gateway buffers. */
export class UpstreamBodyTooLarge extends Error {}

/**
 * The body as plain bytes, whatever `content-encoding` the upstream chose (it may compress even when asked for
 * identity: CDNs and proxies do). Throws when it can't be decoded, or decodes past `maxDecodedBytes`: the caller
 * must not price or hand it out.
 */
export async function decodedBody(res: UpstreamResponse): Promise<{ body: Buffer; decoded: boolean }> {
  const raw = res.headers['content-encoding'];
  const encoding = (Array.isArray(raw) ? raw.join(',') : raw ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return { body: res.body, decoded: false };
  let body = res.body;
  // Encodings are listed in the order they were applied: undo them from the last.
  for (const e of encoding.split(',').map((s) => s.trim()).filter((s) => s && s !== 'identity').reverse()) {
    const decode = decoders[e];
    if (!decode) throw new Error(`unsupported content-encoding "${e}"`);
    body = await decode(body);
  }
  return { body, decoded: true };
}

/**
 * The provider's API. One keep-alive pool; bodies are buffered (per-entity pricing reads them), up to
 * `maxBodyBytes` as they arrive: a longer one is cut off and refused (UpstreamBodyTooLarge), never held whole.
 */
export class Upstream {
  private readonly agent: Agent;
  private readonly origin: string;

  constructor(baseUrl: string, private readonly timeoutMs = 30000, private readonly maxBodyBytes = 64 * 1024 * 1024) {
    this.origin = baseUrl.replace(/\/+$/, '');
    this.agent = new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 10000 });
  }

  async send(method: string, path: string, headers: Record<string, string>, body: Buffer | null): Promise<UpstreamResponse> {
    const res = await request(this.origin + path, {
      method: method as 'GET',
      headers,
      body: body && body.length > 0 ? body : undefined,
      dispatcher: this.agent,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const tooLarge = () => new UpstreamBodyTooLarge(`the upstream's body is larger than ${this.maxBodyBytes} bytes`);
    if (Number(res.headers['content-length'] ?? 0) > this.maxBodyBytes) {
      res.body.destroy();
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > this.maxBodyBytes) {
        res.body.destroy();
        throw tooLarge();
      }
      chunks.push(chunk as Buffer);
    }
    return { status: res.statusCode, headers: res.headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
