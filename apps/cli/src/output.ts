/** The admin commands' human output: cells, tables, field lists (--json prints the API's JSON instead). */

type Json = Record<string, unknown>;

export function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A plain left-aligned table (numbers right-aligned), headers in upper case. */
export function table(rows: Json[], columns: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cells = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const numeric = columns.map((_, i) => cells.every((r) => r[i] === '-' || /^-?\d+(\.\d+)?$/.test(r[i]!)));
  const line = (vals: string[]) => vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n') + '\n';
}

export function fields(obj: Json, keys: string[]): string {
  const width = Math.max(...keys.map((k) => k.length));
  return keys.map((k) => `${k.padEnd(width)}  ${cell(obj[k])}`).join('\n') + '\n';
}

