import { request as httpRequest } from 'node:http';

/** Header names exactly as sent on the wire (fetch lower-cases them), for seeds that spell them out. */
export function rawHeaderNames(url: string, headers: Record<string, string>): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.rawHeaders.filter((_, i) => i % 2 === 0)));
    });
    req.on('error', reject);
    req.end();
  });
}
