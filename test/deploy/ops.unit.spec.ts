import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { registry } from '@tollgate/platform';
import { repoRoot } from '../support/stack';

/**
 * ops/: the Prometheus alert rules and the Grafana dashboard speak only of metrics the apps really export, and are
 * well formed. CI also runs `promtool check rules`, `promtool test rules` and `promtool check config` (Debian's
 * `prometheus` package); where promtool is on the PATH this test runs them too.
 */
describe('ops: alert rules and Grafana dashboard', () => {
  const ops = join(repoRoot, 'ops');
  // Every family the apps export: ours (libs/platform/src/metrics.ts), prom-client's defaults, and Prometheus' `up`.
  const families = new Set(registry.getMetricsAsArray().map((m) => m.name));
  const known = (name: string) =>
    families.has(name) || name === 'up' || [...families].some((f) => ['_bucket', '_sum', '_count'].some((s) => name === `${f}${s}`));
  const functionsAndKeywords = new Set([
    'sum', 'max', 'min', 'avg', 'rate', 'increase', 'histogram_quantile', 'by', 'without', 'and', 'or', 'unless', 'le', 'humanize',
  ]);
  const metricsIn = (expr: string) =>
    [...expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/\([^()]*\)\s*(?=\()/g, '').matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
      .map((m) => m[0])
      .filter((w) => !functionsAndKeywords.has(w) && !/^(app|dependency|outcome|instance|result|status|reason)$/.test(w));

  it('would notice a metric no app exports', () => {
    expect(metricsIn('sum by (app) (rate(tollgate_bogus_total{app="gateway"}[5m])) > 0').filter((m) => !known(m))).toEqual(['tollgate_bogus_total']);
  });

  type Rule = { alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> };
  const rules = (parse(readFileSync(join(ops, 'alerts.yml'), 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> }).groups.flatMap((g) => g.rules);

  it('has alerts for lag, a stalled consumer, offsets the log no longer holds, dead letters (metering and gateway), holds, slow appends, 503s, 5xx, down apps and delayed or disabled webhooks', () => {
    expect(rules.map((r) => r.alert).sort()).toEqual([
      'TollgateAppDown', 'TollgateConsumerLagHigh', 'TollgateConsumerNotProgressing', 'TollgateConsumerOffsetsReset', 'TollgateConsumerStalled',
      'TollgateDeadLetters', 'TollgateDependencyUnavailable',
      'TollgateGatewayDeadLetters', 'TollgateGatewayErrors', 'TollgateHoldsKeptPastTimeout', 'TollgateLedgerAppendSlow',
      'TollgateWebhookBacklog', 'TollgateWebhookEndpointsDisabled', 'TollgateWebhooksDelayed',
    ]);
  });

  it.each(rules.map((r) => [r.alert, r] as const))('%s: known metrics, a severity, a summary and a description', (_name, rule) => {
    const used = metricsIn(rule.expr);
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((m) => !known(m))).toEqual([]);
    expect(['warning', 'critical']).toContain(rule.labels.severity);
    expect(rule.annotations.summary).toBeTruthy();
    expect(rule.annotations.description).toBeTruthy();
    if (rule.for !== undefined) expect(rule.for).toMatch(/^\d+[smh]$/);
  });

  const dashboard = JSON.parse(readFileSync(join(ops, 'grafana-dashboard.json'), 'utf8')) as {
    uid: string; title: string; schemaVersion: number;
    templating: { list: Array<{ name: string; type: string; query: string }> };
    panels: Array<{ id: number; type: string; title: string; datasource: { uid: string }; gridPos: { x: number; y: number; w: number; h: number }; targets: Array<{ refId: string; expr: string }> }>;
  };

  it('is a Grafana dashboard with a Prometheus datasource variable and unique, placed panels', () => {
    expect(dashboard).toMatchObject({ uid: 'tollgate-overview', title: 'Tollgate' });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(['timeseries', 'stat']).toContain(p.type);
      expect(p.datasource.uid).toBe('${datasource}');
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      expect(p.targets.length).toBeGreaterThan(0);
    }
  });

  it('charts only metrics the apps export, and each of ours at least once', () => {
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const used = new Set(exprs.flatMap(metricsIn));
    expect([...used].filter((m) => !known(m))).toEqual([]);
    const ours = [...families].filter((f) => f.startsWith('tollgate_'));
    expect(ours.filter((f) => ![...used].some((u) => u === f || u.startsWith(`${f}_`)))).toEqual([]);
  });

  const promtool = spawnSync('promtool', ['--version']).status === 0;
  (promtool ? it : it.skip)('passes promtool check rules, test rules and check config', () => {
    execFileSync('promtool', ['check', 'rules', 'alerts.yml'], { cwd: ops, stdio: 'pipe' });
    execFileSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: ops, stdio: 'pipe' });
    // The scrape config reads the metrics token from a file the operator provides: a placeholder one here.
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-ops-'));
    for (const f of ['prometheus.yml', 'alerts.yml']) copyFileSync(join(ops, f), join(dir, f));
    writeFileSync(join(dir, 'tollgate-metrics-token'), 'placeholder\n');
    execFileSync('promtool', ['check', 'config', 'prometheus.yml'], { cwd: dir, stdio: 'pipe' });
  });

  it('scrapes with the metrics token as a bearer token, from a file', () => {
    const config = parse(readFileSync(join(ops, 'prometheus.yml'), 'utf8')) as { scrape_configs: Array<{ job_name: string; authorization?: unknown }> };
    expect(config.scrape_configs.find((j) => j.job_name === 'tollgate')?.authorization).toEqual({ type: 'Bearer', credentials_file: 'tollgate-metrics-token' });
  });
});
