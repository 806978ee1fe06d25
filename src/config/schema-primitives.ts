// The schema's building blocks: durations and sizes written as an operator would (`5s`, `64KiB`) and normalised to ms
// and bytes, fractions, names, ports and path prefixes, each with the message and JSON Schema shape editors show.

import { z } from 'zod';
import { DURATION_TEXT_SCHEMA, MAX_DURATION_MS, parseDuration, parseSize, SIZE_TEXT_SCHEMA } from './units.js';

export const DURATION_HELP = 'a duration: 250ms, 5s, 2m, 1h, 1d, or a number of milliseconds';
export const SIZE_HELP = 'a size: 64KiB, 1MiB, 10MB, or a number of bytes';

export const duration = z
  .union([z.number(), z.string()], { error: `must be ${DURATION_HELP}` })
  .transform((v, ctx) => {
    const ms = parseDuration(v);
    if (typeof ms === 'number') return ms;
    ctx.addIssue({ code: 'custom', message: ms.error });
    return z.NEVER;
  })
  .meta({
    anyOf: [
      { type: 'number', minimum: 0, maximum: MAX_DURATION_MS },
      { type: 'string', ...DURATION_TEXT_SCHEMA },
    ],
  });

/** A duration of at least `minMs`: timeouts and intervals where 0 would mean "at once" or "in a tight loop". */
export function durationAtLeast(minMs: number, why: string) {
  return duration.refine((ms) => ms >= minMs, { message: why });
}
export const positiveDuration = durationAtLeast(1, 'must be more than 0');

/** A fraction: `10%` or 0.1. */
export const fraction = z
  .union([z.number().min(0).max(1), z.string().regex(/^(100|\d{1,2}(\.\d+)?)%$/, 'must be a percentage such as 10%')])
  .transform((v) => (typeof v === 'number' ? v : Number(v.slice(0, -1)) / 100));

/** Probes every few ms would be a load of their own on backends and nameservers. */
export const probeInterval = durationAtLeast(100, 'must be at least 100ms');

export const size = z
  .union([z.number(), z.string()], { error: `must be ${SIZE_HELP}` })
  .transform((v, ctx) => {
    const bytes = parseSize(v);
    if (typeof bytes === 'number') return bytes;
    ctx.addIssue({ code: 'custom', message: bytes.error });
    return z.NEVER;
  })
  .meta({
    anyOf: [
      { type: 'number', minimum: 0 },
      { type: 'string', ...SIZE_TEXT_SCHEMA },
    ],
  });

export const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be 1-63 letters, digits, "-", "_" or "."');
export const port = z.number().int().min(0).max(65535);
export const address = z.string().min(1);
export const pathPrefix = z.string().regex(/^\//, 'must start with "/"');
