/**
 * A profile (`config/profiles/<name>.yaml`) as loaded and validated. The YAML uses these exact keys
 * (snake_case). Everything a gateway or metering needs to reproduce one seed API lives here.
 */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** How responses are decorated with rate-limit headers; each style is implemented in the gateway. */
export type HeaderStyle = 'trackyard' | 'beatpass' | 'trakt' | 'trace';

/**
 * Who a limit window counts for:
 * - `key`: the API key (trackyard, trace), `user`: the user token (trakt authed), `application`: the
 *   application key (trakt unauthed), `ip`: the client IP, `client`: the API key when the call has one,
 *   else the client IP (beatpass).
 */
export type LimitSubject = 'key' | 'user' | 'application' | 'ip' | 'client';

export interface LimitDefinition {
  /** Name used in headers, admin overrides and plans: `minute`, `day`, `global`, `AUTHED_API_POST_LIMIT`. */
  name: string;
  /** Fixed window length, aligned to the UTC clock: 1, 60, 300, 3600, 86400. */
  period_seconds: number;
  /** Requests per window when no plan or org override says otherwise. */
  limit: number;
  subject: LimitSubject;
  /** Only calls with one of these methods count (absent: all methods). */
  methods?: HttpMethod[];
  /** Only routes of these categories count (absent: every route that counts against limits). */
  categories?: string[];
  /** `user`: only calls that carry a user token; `no_user`: only calls without one (absent: always). */
  when?: 'user' | 'no_user';
}

export type CostRule =
  | { kind: 'free' }
  | { kind: 'fixed'; credits: number }
  | {
      kind: 'per_entity';
      /** Path expression into the upstream JSON body: `id`, `data[].id`, `data[].partner.id`, `nodes[].id`. */
      entities: string;
      /** Path expression whose value(s) are never billed (trace graph: `root.id`). */
      exclude?: string;
      /** Re-access of an entity by the same org within this many days is free. */
      reaccess_days: number;
    };

export interface RouteDefinition {
  method: HttpMethod;
  /** Template under the profile's base path: `/search`, `/companies/:identifier`. */
  path: string;
  /** Template of the path on the upstream, under the same base path (default: `path`). */
  upstream_path?: string;
  /** Category for limits: `general`, `media`, `analytics`, `write`, `auth`, `search`, `open`, ... */
  category: string;
  /**
   * `required`: a valid key or 401; `none`: anonymous, limited by client IP; `user` (trakt identity only): a
   * valid application key AND a user token, or 401 (Trakt's writes act for a user).
   */
  auth: 'required' | 'none' | 'user';
  /** `proxy` forwards to the upstream; `me` and `usage` are answered by the query service. */
  handler: 'proxy' | 'me' | 'usage';
  cost: CostRule;
  /** false for `/me` and `/usage`: they never count against the plan's limits (SPEC §7). */
  counts_against_limits: boolean;
  /** A login route: upstream 401s count as failed logins for the lockout. */
  login?: boolean;
}

export interface PlanDefinition {
  name: string;
  /** Granted once when the org opens (or moves to this plan); never reset. */
  one_time_credits: number;
  /** Granted at 00:00 UTC on the 1st of each month; unused allowance expires then. */
  monthly_allowance: number;
  /** Per limit name, requests per window for this plan (missing names use the limit's default). */
  limits: Record<string, number>;
}

/** Error bodies: JSON templates; a string value that is exactly `{name}` is replaced by that number. */
export interface ErrorBodies {
  unauthorized: Record<string, unknown>;
  not_found: Record<string, unknown>;
  rate_limited: Record<string, unknown>;
  insufficient_credits: Record<string, unknown>;
  upstream_unavailable: Record<string, unknown>;
  locked_out: Record<string, unknown>;
  invalid_key_throttled: Record<string, unknown>;
  /** A request the gateway will not forward as sent (a path that is not canonical): 400 or 414. Optional in a profile. */
  bad_request: Record<string, unknown>;
  /** A 2xx whose body the route can't price: answered 502, not handed out, free. Optional in a profile. */
  unpriceable: Record<string, unknown>;
}

export interface Profile {
  name: string;
  /** Where the file was read from, for error messages. */
  source: string;
  base_path: string;
  /** `bearer`: `Authorization: Bearer <key>`; `trakt`: `trakt-api-key: <app key>` plus optional user Bearer token. */
  identity: 'bearer' | 'trakt';
  credits: {
    enforcement: 'strict' | 'eventual';
    /** Holds never settled by an event are released after this long. */
    reservation_timeout_seconds: number;
  };
  headers: {
    style: HeaderStyle;
    /** Also send IETF `RateLimit-Policy` / `RateLimit` fields. */
    standard_headers: boolean;
  };
  limits: LimitDefinition[];
  plans: PlanDefinition[];
  default_plan: string;
  routes: RouteDefinition[];
  /** Repeated invalid keys from one IP: after `attempts` in `period_seconds`, 429 until the window ends. */
  invalid_key_throttle: { attempts: number; period_seconds: number };
  /** Failed logins (login routes): after `max_failures` in `window_seconds`, the IP and the account are locked. */
  lockout?: { max_failures: number; window_seconds: number; lockout_seconds: number };
  errors: ErrorBodies;
}
