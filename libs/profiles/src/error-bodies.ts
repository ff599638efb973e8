import { ErrorBodies } from './profile.types';

/**
 * The template variables the gateway supplies for each error body. A profile may use only these, so a
 * typo in a placeholder is caught when the profile loads instead of reaching a client as `{retry_afer}`.
 */
export const errorBodyVariables: Readonly<Record<keyof ErrorBodies, readonly string[]>> = {
  unauthorized: [],
  not_found: [],
  rate_limited: ['retry_after'],
  insufficient_credits: ['requested', 'shortfall'],
  upstream_unavailable: [],
  locked_out: ['retry_after'],
  invalid_key_throttled: ['retry_after'],
  bad_request: ['field', 'problem'],
  unpriceable: [],
};

/**
 * Bodies for the kinds no seed shows, used when a profile does not write its own: Tollgate's own refusals, in
 * the shape every seed's errors share (`error` and `message`).
 */
export const defaultErrorBodies: Readonly<Partial<Record<keyof ErrorBodies, Record<string, unknown>>>> = {
  bad_request: { error: 'bad_request', message: '{problem}', field: '{field}' },
  unpriceable: { error: 'unpriceable', message: "The upstream's answer could not be priced, so it was not returned. Nothing was charged." },
};

/** `{name}` inside a string value. */
export const placeholderPattern = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const wholePlaceholder = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

/**
 * An error body ready to send: a deep copy of the template where a string that is exactly `{name}` becomes
 * `vars[name]` with its own type (so `"retry_after_seconds":"{retry_after}"` renders as a JSON number, as the
 * seeds show), and `{name}` inside a longer string is interpolated. Unknown placeholders are left as written.
 */
export function renderErrorBody(template: Record<string, unknown>, vars: Record<string, number | string>): Record<string, unknown> {
  return renderValue(template, vars) as Record<string, unknown>;
}

function renderValue(value: unknown, vars: Record<string, number | string>): unknown {
  if (typeof value === 'string') return renderString(value, vars);
  if (Array.isArray(value)) return value.map((v) => renderValue(v, vars));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = renderValue(v, vars);
    return out;
  }
  return value;
}

function renderString(s: string, vars: Record<string, number | string>): unknown {
  const whole = wholePlaceholder.exec(s);
  if (whole && Object.prototype.hasOwnProperty.call(vars, whole[1]!)) return vars[whole[1]!];
  return s.replace(placeholderPattern, (match, name: string) => (Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : match));
}
