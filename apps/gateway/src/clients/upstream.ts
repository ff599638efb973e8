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

export function forwardableHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || hopByHop.has(k)) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/** The provider's API. One keep-alive pool; bodies are buffered (per-entity pricing reads them). */
export class Upstream {
  private readonly agent: Agent;

  constructor(private readonly baseUrl: string, private readonly timeoutMs = 30000) {
    this.agent = new Agent({ connections: 128, pipelining: 1, keepAliveTimeout: 10000 });
  }

  async send(method: string, path: string, headers: Record<string, string>, body: Buffer | null): Promise<UpstreamResponse> {
    const res = await request(this.baseUrl + path, {
      method: method as 'GET',
      headers,
      body: body && body.length > 0 ? body : undefined,
      dispatcher: this.agent,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) chunks.push(chunk as Buffer);
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
