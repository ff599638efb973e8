import { INestApplication } from '@nestjs/common';
import { NextFunction, Request, Response } from 'express';
import { httpRequests } from './metrics';

/** Common HTTP setup: request counting for /metrics, JSON 404s, no x-powered-by. */
export function configureHttp(app: INestApplication, name: string): void {
  const http = app.getHttpAdapter().getInstance() as { disable?: (s: string) => void };
  http.disable?.('x-powered-by');
  app.use((req: Request, res: Response, next: NextFunction) => {
    res.on('finish', () => {
      const route = (req as Request & { route?: { path?: string } }).route?.path ?? 'unmatched';
      httpRequests.inc({ app: name, route, status: String(res.statusCode) });
    });
    next();
  });
}
