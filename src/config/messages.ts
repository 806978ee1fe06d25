// Config problems in the reader's words ("must be a number or `auto`", "unknown key `hashkey`; did you mean
// `hashKey`?") instead of the validation library's. A message set in the schema itself always wins over these.

import type { z } from 'zod';

type Issue = z.core.$ZodRawIssue;

/** How a value of an expected kind is named: "must be <noun>". */
const KIND_NOUNS: Readonly<Record<string, string>> = {
  number: 'a number',
  int: 'a whole number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'a map of keys',
  record: 'a map of keys',
};

function kindNoun(expected: string): string {
  return KIND_NOUNS[expected] ?? `a ${expected}`;
}

function quoted(value: unknown): string {
  return `\`${String(value)}\``;
}

/** "a, b or c". */
function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** What one union branch wanted, when it refused the value outright (wrong kind or value), else undefined. */
function branchWanted(branch: readonly z.core.$ZodIssue[]): string[] | undefined {
  const first = branch[0];
  if (first === undefined || first.path.length > 0) return undefined;
  if (first.code === 'invalid_type') return [kindNoun(first.expected)];
  if (first.code === 'invalid_value') return first.values.map(quoted);
  return undefined;
}

/**
 * A zod error map (passed to `safeParse`): the message for an issue whose schema set none. Unknown keys get their
 * message from `unknownKeyMessage`, where the keys allowed at that path are known.
 */
export function readerWords(issue: Issue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      // A whole number is wanted: "must be a number" for text, "a whole number" for 1.5.
      if (issue.expected === 'int' && typeof issue.input !== 'number') return 'must be a number';
      return `must be ${kindNoun(issue.expected)}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${quoted(issue.values[0])}`
        : `must be one of ${orList(issue.values.map(quoted))}`;
    case 'invalid_union': {
      const wanted = issue.errors.map(branchWanted);
      if (wanted.every((w) => w !== undefined)) return `must be ${orList(wanted.flat())}`;
      return undefined;
    }
    case 'too_small':
      return boundMessage(issue.origin, issue.minimum, issue.inclusive === true, 'least');
    case 'too_big':
      return boundMessage(issue.origin, issue.maximum, issue.inclusive === true, 'most');
    case 'invalid_format':
      return issue.pattern === undefined ? `must be a valid ${issue.format}` : `must match ${issue.pattern}`;
    case 'unrecognized_keys':
      return issue.keys.length === 1 ? `unknown key ${quoted(issue.keys[0])}` : 'unknown keys';
    case 'invalid_key':
      return 'is not a valid name';
    default:
      return undefined;
  }
}

function boundMessage(origin: string, bound: number | bigint, inclusive: boolean, side: 'least' | 'most'): string {
  const n = Number(bound);
  switch (origin) {
    case 'array':
      return side === 'least' ? `needs at least ${n} item${n === 1 ? '' : 's'}` : `takes at most ${n} items`;
    case 'string':
      if (side === 'least' && n === 1) return 'must not be empty';
      return `must be at ${side} ${n} characters long`;
    default:
      if (inclusive) return `must be at ${side} ${n}`;
      return side === 'least' ? `must be more than ${n}` : `must be less than ${n}`;
  }
}

/** "unknown key `hashkey`; did you mean `hashKey`?", or the keys allowed there when none is close. */
export function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  const close = closestKey(key, allowed);
  if (close !== undefined) return `unknown key ${quoted(key)}; did you mean ${quoted(close)}?`;
  if (allowed.length === 0) return `unknown key ${quoted(key)}`;
  return `unknown key ${quoted(key)}; allowed here: ${[...allowed].sort().map(quoted).join(', ')}`;
}

/**
 * The allowed key nearest to `key` by edit distance (letter case ignored, a transposition costs 1), if it is near
 * enough to be a slip: at most one edit for short keys, two from five letters, three from nine.
 */
export function closestKey(key: string, allowed: readonly string[]): string | undefined {
  const limit = key.length < 5 ? 1 : key.length < 9 ? 2 : 3;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d = new Array<number>(rows * cols);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[(i - 1) * cols + j]! + 1, d[i * cols + j - 1]! + 1, d[(i - 1) * cols + j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1]!;
}

/** Why a file could not be read, in a few words ("does not exist", "permission denied"). */
export function fileProblem(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return err.message;
  }
}
