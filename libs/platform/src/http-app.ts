import { INestApplication, Logger } from '@nestjs/common';
import { NextFunction, Request, Response } from 'express';
import { httpRequests } from './metrics';

/**
 * Common HTTP setup: request counting for /metrics, one structured access-log line per request (verbose level:
 * LOG_LEVEL=verbose shows them) with its request id, no x-powered-by. The log carries the path without its
 * query string and never a header, so keys and tokens stay out of it.
 */
export function configureHttp(app: INestApplication, name: string): void {
  const access = new Logger(`${name}:http`);
  const http = app.getHttpAdapter().getInstance() as { disable?: (s: string) => void };
  http.disable?.('x-powered-by');
  app.use((req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      access.verbose({
        msg: 'request',
        request_id: res.getHeader('x-request-id') ?? req.headers['x-request-id'] ?? null,
        method: req.method,
        path: req.originalUrl.split('?')[0],
        status: res.statusCode,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
      const route = (req as Request & { route?: { path?: string } }).route?.path ?? 'unmatched';
      httpRequests.inc({ app: name, route, status: String(res.statusCode) });
    });
    next();
  });
}

/**
 * For services whose paths carry ids (metering's admin API): a path segment whose percent-encoding is not UTF-8
 * (`%FF`, the overlong `%C0%AF`, the lone surrogate `%ED%A0%80`) is answered with the API's 400, naming the
 * segment, before routing. Express would refuse it too, but in another shape ("Failed to decode param") that
 * names no field. Not for the gateway: the paths it forwards belong to the upstream.
 */
export function refuseUndecodablePaths(app: INestApplication): void {
  app.use((req: Request, res: Response, next: NextFunction) => {
    for (const segment of req.path.split('/')) {
      try {
        decodeURIComponent(segment);
      } catch {
        const shown = segment.length > 40 ? `${segment.slice(0, 40)}…` : segment;
        const problem = `segment "${shown}" is not percent-encoded UTF-8`;
        res.status(400).json({ error: 'invalid_request', message: `path: ${problem}`, fields: [{ field: 'path', problem }] });
        return;
      }
    }
    next();
  });
}
