import { Controller, Get, Param, Query } from '@nestjs/common';
import { intQuery, invalidRequest, queryString } from './http-input';
import { decodeCursor, traceCompany, traceCompanyPage, traceOpenCompanies, tracePartnerships, tracePartnershipGraph } from './trace.catalog';

/**
 * Trace's routes under `/v1`. Their bodies carry the ids per-entity billing reads: `data[].id`, `id`,
 * `data[].partner.id` (with one duplicate per response, see `tracePartnerships`), `nodes[].id` minus `root.id`.
 */
@Controller('v1')
export class TraceController {
  /** `?limit=` 1..100 (default 10, larger is capped at 100), `?cursor=` from `next_cursor`, `?q=` filters by name or domain. */
  @Get('companies')
  companies(@Query('limit') limit: unknown, @Query('cursor') cursor: unknown, @Query('q') q: unknown) {
    const rawCursor = queryString(cursor);
    let offset = 0;
    if (rawCursor) {
      const decoded = decodeCursor(rawCursor);
      if (decoded === null) throw invalidRequest('cursor is not one this API issued');
      offset = decoded;
    }
    return traceCompanyPage(offset, intQuery(limit, 'limit', { fallback: 10, min: 1, max: 100 }), queryString(q));
  }

  /** An id (`c_...`) or a domain (`acme.com`); both name the same company. */
  @Get('companies/:identifier')
  company(@Param('identifier') identifier: string) {
    return traceCompany(identifier);
  }

  @Get('companies/:identifier/partnerships')
  partnerships(@Param('identifier') identifier: string) {
    return tracePartnerships(identifier);
  }

  /** `?depth=` 1 (default) or 2. */
  @Get('companies/:identifier/partnerships/graph')
  graph(@Param('identifier') identifier: string, @Query('depth') depth: unknown) {
    return tracePartnershipGraph(identifier, intQuery(depth, 'depth', { fallback: 1, min: 1, max: 2 }) === 2 ? 2 : 1);
  }

  /** Unauthenticated at the gateway (limited per client IP); here it is just a short list. */
  @Get('open/companies')
  openCompanies() {
    return traceOpenCompanies();
  }
}
