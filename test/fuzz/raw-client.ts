import { connect } from 'node:net';

/**
 * One HTTP/1.1 request written byte for byte on a socket: the path and header values go out exactly as given
 * (latin1 strings are bytes), which fetch and node:http refuse or normalise (dot segments, control characters,
 * duplicate headers). The answer is read to the end of the connection (`Connection: close`).
 */
export interface RawRequest {
  method: string;
  path: string;
  /** Name and value as latin1 strings: one char is one byte on the wire; a name may repeat. */
  headers: Array<[string, string]>;
  body: Buffer | null;
}

export interface RawResponse {
  status: number;
  /** Lower-cased names; a repeated header's values joined with ', '. Values as latin1 (the bytes). */
  headers: Record<string, string>;
  body: Buffer;
}

export function rawRequest(port: number, r: RawRequest, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => {
      size += c.length;
      // An answer larger than this is kept by its head only: the body is not what the checker reads.
      if (size <= 64 * 1024 * 1024) chunks.push(c);
    });
    // A server may answer (413) and close before it read the whole body: the write fails, the answer stands.
    let failure: Error | null = null;
    socket.on('error', (e) => {
      failure = e;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks), r.method === 'HEAD'));
      } catch (e) {
        reject(failure ?? e);
      }
    });
    const lines = [`${r.method} ${r.path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...r.headers.map(([k, v]) => `${k}: ${v}`), 'Connection: close'];
    if (r.body !== null) lines.push(`Content-Length: ${r.body.length}`);
    socket.write(Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'));
    if (r.body !== null) socket.write(r.body);
    // Half-close is not sent: some servers answer a half-closed request with nothing.
  });
}

function parseResponse(raw: Buffer, head: boolean): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`connection closed without a complete answer (${raw.length} bytes)`);
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) throw new Error(`not an HTTP answer: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  let body = raw.subarray(end + 4);
  if (head) body = Buffer.alloc(0);
  else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: Number(m[1]), headers, body };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    if (eol === -1) break;
    const n = parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(n) || n === 0) break;
    out.push(b.subarray(eol + 2, eol + 2 + n));
    at = eol + 2 + n + 2;
  }
  return Buffer.concat(out);
}
