import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Response } from 'express';
import { map, Observable } from 'rxjs';
import { CommandIdHeader, CommandIdOf } from './admin-commands';

/** Sends the id of the command a request recorded (or, for a replayed grant, found) as `X-Tollgate-Command-Id`. */
@Injectable()
export class CommandIdInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      map((body: unknown) => {
        const id = typeof body === 'object' && body !== null ? (body as { [CommandIdOf]?: string })[CommandIdOf] : undefined;
        if (id) context.switchToHttp().getResponse<Response>().setHeader(CommandIdHeader, id);
        return body;
      }),
    );
  }
}
