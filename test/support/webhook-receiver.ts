import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface WebhookHit {
  id: string;
  body: { type: string; timestamp: string; data: Record<string, unknown> };
  answered: number;
  /** The raw body and the Standard Webhooks headers, to verify again with another secret. */
  raw: string;
  headers: Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string>;
}

/**
 * A receiver as a customer would write one: every request's signature is verified with the `standardwebhooks`
 * package (a bad one fails the test), and `answer` decides each response (status, or a delay past the timeout).
 */
export class WebhookReceiver {
  readonly hits: WebhookHit[] = [];
  readonly badSignatures: string[] = [];
  answer: (n: number) => { status: number; delayMs?: number } = () => ({ status: 204 });
  private server!: Server;
  url = '';

  constructor(private readonly secret: () => string) {}

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
        try {
          new Webhook(this.secret()).verify(raw, headers);
        } catch (e) {
          this.badSignatures.push(`${headers['webhook-id']}: ${(e as Error).message}`);
        }
        const a = this.answer(this.hits.length);
        this.hits.push({ id: headers['webhook-id'], body: JSON.parse(raw) as WebhookHit['body'], answered: a.status, raw, headers });
        setTimeout(() => res.writeHead(a.status).end('{"ok":true}'), a.delayMs ?? 0);
      });
    });
    await new Promise<void>((r) => this.server.listen(this.port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}/hooks`;
  }

  private port = 0;

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  /** Down: nothing listens on the port (connections are refused) until `start()` listens on it again. */
  async down(): Promise<void> {
    await this.stop();
  }

  /** The ids the receiver accepted (2xx), first acceptance of each, in arrival order. */
  accepted(): WebhookHit[] {
    const seen = new Set<string>();
    return this.hits.filter((h) => h.answered < 300 && !seen.has(h.id) && seen.add(h.id));
  }
}
