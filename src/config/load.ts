// YAML file → validated, normalised, deeply frozen Config. Every problem is reported with file:line:column, the
// key path and the line itself, all at once, so an operator fixes a file in one pass. An invalid file never yields
// a Config.

import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { Errors } from '../errors.js';
import { fileProblem, readerWords, unknownKeyMessage } from './messages.js';
import { normalise } from './normalise.js';
import { configSchema } from './schema.js';
import { keysAllowedAt } from './schema-walk.js';
import type { Config } from './types.js';

export interface ConfigIssue {
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  /** Dotted key path, e.g. `routes[0].pool`. Empty for file-level problems. */
  readonly path: string;
  readonly message: string;
  /** The text of `line`, to show under the message; undefined without a line. */
  readonly source?: string | undefined;
  /** How many characters from `column` the offending key or value spans on that line (at least 1). */
  readonly width?: number | undefined;
}

export class ConfigError extends Error {
  readonly code = Errors.CONFIG_INVALID.code;
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(`invalid configuration:\n${issues.map(formatIssue).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** One line: `file:line:column: key.path: message`. */
export function formatIssue(i: ConfigIssue): string {
  const where = i.line === undefined ? i.file : `${i.file}:${i.line}:${i.column}`;
  return i.path ? `${where}: ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

/** formatIssue, then the offending line with a caret under the column, as compilers show it (for people). */
export function formatIssueWithSource(i: ConfigIssue): string {
  const head = formatIssue(i);
  if (i.source === undefined || i.line === undefined || i.column === undefined) return head;
  const gutter = String(i.line).length;
  // Tabs stay tabs so the caret lines up whatever the terminal's tab width.
  const pad = i.source.slice(0, i.column - 1).replace(/[^\t]/g, ' ');
  const width = Math.max(1, Math.min(i.width ?? 1, i.source.length - i.column + 1));
  const bar = `${' '.repeat(gutter + 2)}|`;
  return `${head}\n${bar}\n ${i.line} | ${i.source}\n${bar} ${pad}${'^'.repeat(width)}`;
}

type PathSegment = string | number;

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** Reads and validates a config file; throws ConfigError listing every problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const absolute = resolvePath(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const problem = fileProblem(err as NodeJS.ErrnoException);
    throw new ConfigError([issueAt(absolute, undefined, '', `cannot read config file: ${problem}`)]);
  }
  return parseConfig(text, absolute, env);
}

/** A span of the source text: [start, end) offsets. */
type Range = readonly [number, number];

/** Validates config text as if it were read from `file` (relative TLS paths resolve against its folder). */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const sourceLine = (line: number) => text.split('\n')[line - 1]?.replace(/\r$/, '');
  const at = (range: Range | undefined, path: string, message: string): ConfigIssue => {
    // No node to point at only when the document is empty: its first line is where the content should be.
    const [start, end] = range ?? [0, 0];
    const p = lines.linePos(start);
    return { ...issueAt(file, p, path, message), source: sourceLine(p.line), width: end - start };
  };

  const issues: ConfigIssue[] = [];
  // The first syntax error is the real one; the ones after it are mostly the parser losing its footing.
  const syntax = doc.errors[0];
  if (syntax) {
    const message = (syntax.message.split('\n')[0] ?? syntax.message).replace(/ at line \d+, column \d+:?$/, '');
    const p = syntax.linePos?.[0];
    issues.push({ ...issueAt(file, p, '', message), source: p && sourceLine(p.line) });
  }
  if (issues.length > 0) throw new ConfigError(issues);

  substituteEnv(doc, env, (range, path, message) => issues.push(at(range, path, message)));
  if (issues.length > 0) throw new ConfigError(issues);

  const parsed = configSchema.safeParse(doc.toJS() ?? {}, { error: readerWords });
  if (!parsed.success) {
    for (const zi of parsed.error.issues) issues.push(...zodIssueToConfigIssues(doc, zi, at));
    throw new ConfigError(issues);
  }

  const config = normalise(parsed.data, file, (path, message) => {
    issues.push(at(rangeOf(doc, path), formatPath(path), message));
  });
  if (issues.length > 0) throw new ConfigError(issues);
  return deepFreeze(config);
}

function issueAt(
  file: string,
  p: { line: number; col: number } | undefined,
  path: string,
  message: string,
): ConfigIssue {
  return { file, line: p?.line, column: p?.col, path, message };
}

/** `${NAME}` in string values is replaced by the environment variable; an unset variable is an error. */
function substituteEnv(
  doc: Document,
  env: NodeJS.ProcessEnv,
  report: (range: Range | undefined, path: string, message: string) => void,
): void {
  visit(doc, {
    Scalar(_key, node, ancestors) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, varName: string) => {
        const value = env[varName];
        if (value !== undefined) return value;
        report(rangeOfNode(node), pathOfAncestors([...ancestors, node]), `environment variable ${varName} is not set`);
        return whole;
      });
    },
  });
}

function pathOfAncestors(ancestors: readonly unknown[]): string {
  const segs: PathSegment[] = [];
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i];
    if (isPair(a) && isScalar(a.key)) segs.push(String(a.key.value));
    else if (isSeq(a)) {
      const child = ancestors[i + 1];
      const idx = a.items.indexOf(child as never);
      if (idx >= 0) segs.push(idx);
    }
  }
  return formatPath(segs);
}

function rangeOfNode(node: unknown): Range | undefined {
  const range = (node as { range?: readonly number[] } | null)?.range;
  return range && range[0] !== undefined && range[1] !== undefined ? [range[0], range[1]] : undefined;
}

/**
 * Where the YAML node at `path` is (its key, with `atKey`), or its nearest existing ancestor, so a missing key
 * points at its parent.
 */
function rangeOf(doc: Document, path: readonly PropertyKey[], atKey = false): Range | undefined {
  let node: unknown = doc.contents;
  let range = rangeOfNode(doc.contents);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      range = rangeOfNode(pair.key) ?? range;
      if (atKey && i === path.length - 1) break;
      node = pair.value;
      if (isScalar(node) || isMap(node) || isSeq(node)) range = rangeOfNode(node) ?? range;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      range = rangeOfNode(item) ?? range;
    } else break;
  }
  return range;
}

/** Whether a union branch refused the value outright (wrong kind or value) rather than something inside it. */
function refusedOutright(branch: readonly z.core.$ZodIssue[]): boolean {
  const first = branch[0];
  return first !== undefined && first.path.length === 0 && ['invalid_type', 'invalid_value'].includes(first.code);
}

function zodIssueToConfigIssues(
  doc: Document,
  zi: z.core.$ZodIssue,
  at: (range: Range | undefined, path: string, message: string) => ConfigIssue,
): ConfigIssue[] {
  const path = zi.path as PropertyKey[];
  if (zi.code === 'unrecognized_keys') {
    const allowed = keysAllowedAt(configSchema, path);
    return zi.keys.map((k) =>
      at(rangeOf(doc, [...path, k], true), formatPath([...path, k]), unknownKeyMessage(k, allowed)),
    );
  }
  if (zi.code === 'invalid_union') {
    // A branch that accepted the kind of value knows what is wrong with it: report its first problem. When every
    // branch refused the kind, the union's own message says what would do ("must be a number or `auto`").
    const best = zi.errors.find((branch) => !refusedOutright(branch))?.[0];
    if (best) return zodIssueToConfigIssues(doc, { ...best, path: [...path, ...best.path] } as z.core.$ZodIssue, at);
  }
  if (zi.code === 'invalid_key') {
    const key = path.at(-1);
    return [
      at(rangeOf(doc, path, true), formatPath(path), `\`${String(key)}\` ${zi.issues[0]?.message ?? zi.message}`),
    ];
  }
  return [at(rangeOf(doc, path), formatPath(path), zi.message)];
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    const children = value instanceof Map ? value.values() : Object.values(value);
    for (const child of children) deepFreeze(child);
  }
  return value;
}
