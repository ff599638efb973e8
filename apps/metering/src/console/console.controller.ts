import { Controller, Get, NotFoundException, Param, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Response } from 'express';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The operator's console (SPEC §9, `GET /console`): one static page and its assets, all from this process
 * (copied from the source and node_modules by scripts/copy-assets.js; no CDN). The page holds no data: it signs in
 * with the admin token and reads everything from the admin API with `Authorization: Bearer`, so the data stays
 * behind the token and the token never enters a URL, a cookie or a log.
 */
const assets: Record<string, string> = {
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
  'uPlot.iife.min.js': 'text/javascript; charset=utf-8',
  'uPlot.min.css': 'text/css; charset=utf-8',
};

// Scripts and styles from this origin only (no inline script can run, so an injected string can't read the token).
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const ConsoleAssetsDir = join(__dirname, 'public');

@ApiExcludeController()
@Controller('console')
export class ConsoleController {
  private readonly files = new Map<string, Buffer>();

  constructor() {
    // Read once at start: a missing asset is a broken build, better found now than by an operator.
    for (const name of ['index.html', ...Object.keys(assets)]) this.files.set(name, readFileSync(join(ConsoleAssetsDir, name)));
  }

  @Get()
  page(@Res() res: Response): void {
    this.send(res, 'index.html', 'text/html; charset=utf-8', 'no-store');
  }

  @Get('assets/:file')
  asset(@Param('file') file: string, @Res() res: Response): void {
    const type = Object.prototype.hasOwnProperty.call(assets, file) ? assets[file] : undefined;
    if (!type) throw new NotFoundException({ error: 'not_found', message: 'no such console asset' });
    this.send(res, file, type, 'no-cache');
  }

  private send(res: Response, file: string, type: string, cache: string): void {
    res
      .status(200)
      .set({
        'content-type': type,
        'cache-control': cache,
        'content-security-policy': contentSecurityPolicy,
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
      })
      .send(this.files.get(file));
  }
}
