import { CanActivate, ExecutionContext, Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import { timingSafeEqual, createHash } from 'node:crypto';

/** DI token for the admin token the guard compares against. */
export const AdminToken = Symbol('AdminToken');

/** `Authorization: Bearer $TOLLGATE_ADMIN_TOKEN`, compared in constant time. */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  private readonly expected: Buffer;

  constructor(@Inject(AdminToken) token: string) {
    this.expected = createHash('sha256').update(token).digest();
  }

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>();
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
    const digest = createHash('sha256').update(presented).digest();
    if (!presented || !timingSafeEqual(digest, this.expected)) {
      throw new UnauthorizedException({ error: 'unauthorized', message: 'admin API: missing or wrong Authorization: Bearer <TOLLGATE_ADMIN_TOKEN>' });
    }
    return true;
  }
}
