import type { Context } from 'koa';
import { AppError } from '../errors';

export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Reads a JSON or form body of at most 64 KiB. Too large: 413 without reading the rest;
 * malformed: 400; other media types: 415. An empty body is `{}`.
 */
export async function readBody(ctx: Context): Promise<Record<string, unknown>> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  const type = (ctx.get('content-type') || 'application/json').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    return Object.fromEntries(new URLSearchParams(text));
  }
  if (type !== 'application/json' && type !== 'text/plain') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Expected a JSON or form body, got ${type}`, { status: 415 });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new AppError('INVALID_JSON', `The body is not valid JSON: ${(err as Error).message}`, { status: 400 });
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw new AppError('INVALID_BODY', 'Expected a JSON object', { status: 400 });
  }
  return data as Record<string, unknown>;
}

const tooLarge = (): AppError => new AppError('BODY_TOO_LARGE', `The body is larger than ${MAX_BODY_BYTES / 1024} KiB`, { status: 413 });

/**
 * The raw body, at most `maxBytes`, for routes that take more than 64 KiB (workflows: 16 MiB of
 * JSON, 64 MiB of PNG). Too large: 413 without reading the rest.
 */
export async function readBytes(ctx: Context, maxBytes: number): Promise<Buffer> {
  const limit = (): AppError => new AppError('BODY_TOO_LARGE', `The body is larger than ${maxBytes / (1024 * 1024)} MiB`, { status: 413 });
  if (Number(ctx.get('content-length') || 0) > maxBytes) throw limit();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw limit();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
