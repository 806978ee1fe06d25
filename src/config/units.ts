// Human units in config values: durations ("250ms", "5s", "2m", "1h") and sizes ("64KiB", "1MiB", "10MB").
// Plain numbers mean milliseconds and bytes. Parsing is a single linear scan: config may come from anywhere.

const DURATION_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_BYTES: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** Longest quantity text read: anything longer is not a duration or size. */
const MAX_QUANTITY_CHARS = 64;

/** Splits "12.5 MiB" into its number and unit, or returns undefined. Bounded, no backtracking. */
function splitQuantity(text: string): { value: number; unit: string } | undefined {
  if (text.length > MAX_QUANTITY_CHARS) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) return undefined;
  return { value: Number(m[1]), unit: (m[2] ?? '').toLowerCase() };
}

/** The longest a Node timer waits (2^31−1 ms, about 24.8 days): a longer delay would fire after 1 ms. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

export function parseDuration(input: number | string): number | { error: string } {
  let ms: number;
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return { error: 'must be a non-negative duration' };
    ms = input;
  } else {
    const q = splitQuantity(input);
    const factor = q && (q.unit === '' ? 1 : DURATION_MS[q.unit]);
    if (!q || factor === undefined) return { error: `"${input}" is not a duration (use e.g. 250ms, 5s, 2m, 1h)` };
    ms = Math.round(q.value * factor);
  }
  if (ms > MAX_DURATION_MS)
    return { error: `must be at most ${MAX_DURATION_MS}ms (about 24.8 days, the longest a timer waits)` };
  return ms;
}

export function parseSize(input: number | string): number | { error: string } {
  if (typeof input === 'number') {
    return Number.isFinite(input) && input >= 0 ? Math.floor(input) : { error: 'must be a non-negative size' };
  }
  const q = splitQuantity(input);
  const factor = q && (q.unit === '' ? 1 : SIZE_BYTES[q.unit]);
  if (!q || factor === undefined) return { error: `"${input}" is not a size (use e.g. 64KiB, 1MiB, 1000)` };
  return Math.floor(q.value * factor);
}

/**
 * The text forms splitQuantity accepts with one of `units` (any case), as a JSON Schema `pattern` (ECMA-262, no
 * flags), so an editor flags what the loader would refuse.
 */
function quantityPattern(units: Readonly<Record<string, number>>): string {
  const anyCase = (unit: string) => [...unit].map((c) => `[${c}${c.toUpperCase()}]`).join('');
  const alternatives = Object.keys(units)
    .sort((a, b) => b.length - a.length)
    .map(anyCase)
    .join('|');
  return `^\\s*\\d+(?:\\.\\d+)?\\s*(?:${alternatives})?\\s*$`;
}

/** JSON Schema for a duration or size given as text (numbers are covered by their own branch). */
export const DURATION_TEXT_SCHEMA = { pattern: quantityPattern(DURATION_MS), maxLength: MAX_QUANTITY_CHARS } as const;
export const SIZE_TEXT_SCHEMA = { pattern: quantityPattern(SIZE_BYTES), maxLength: MAX_QUANTITY_CHARS } as const;
