import { readdirSync } from 'node:fs';
import { PlanTerms, Pricing } from '@tollgate/billing';
import { loadProfile, profilesDir, Profile, RouteDefinition } from '@tollgate/profiles';

/**
 * Every profile metering can price, by name. Metering serves gateways of any shipped profile; an org belongs
 * to one profile (set when it is created) and events must name that profile.
 */
export class ProfileCatalog {
  private readonly profiles = new Map<string, Profile>();
  private readonly routes = new Map<string, RouteDefinition>();

  constructor(readonly active: Profile, others: Profile[]) {
    for (const p of [active, ...others]) {
      this.profiles.set(p.name, p);
      for (const r of p.routes) this.routes.set(`${p.name} ${r.method} ${r.path}`, r);
    }
  }

  static load(activeName: string, dir = profilesDir()): ProfileCatalog {
    const active = loadProfile(activeName, dir);
    const others = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml') && f !== `${activeName}.yaml`)
      .map((f) => loadProfile(f.replace(/\.yaml$/, ''), dir));
    return new ProfileCatalog(active, others);
  }

  names(): IterableIterator<string> {
    return this.profiles.keys();
  }

  get(name: string): Profile | undefined {
    return this.profiles.get(name);
  }

  route(profile: string, method: string, routePath: string): RouteDefinition | undefined {
    return this.routes.get(`${profile} ${method} ${routePath}`);
  }

  plan(profile: string, planName: string): PlanTerms | undefined {
    const p = this.profiles.get(profile)?.plans.find((x) => x.name === planName);
    return p && { name: p.name, oneTimeCredits: p.one_time_credits, monthlyAllowance: p.monthly_allowance };
  }
}

export function pricingOf(route: RouteDefinition): Pricing {
  const c = route.cost;
  if (c.kind === 'fixed') return { kind: 'fixed', credits: c.credits };
  if (c.kind === 'per_entity') return { kind: 'per_entity', reaccessDays: c.reaccess_days };
  return { kind: 'free' };
}
