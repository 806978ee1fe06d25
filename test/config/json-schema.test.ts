// The config's JSON Schema: shipped as config.schema.json exactly as the code generates it, pointed at by the
// example's first line, describing every key, accepted by a real JSON Schema validator (ajv) together with the
// example and every YAML snippet of the docs, and agreeing with `wsgate --check` on what is valid.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configJsonSchema, configJsonSchemaText, JSON_SCHEMA_FILE } from '../../src/config/json-schema.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'dist', 'src', 'cli.js');

function validator() {
  // strict: an unknown keyword or format in the generated schema is an error, not silently ignored.
  return new Ajv2020({ strict: true, allErrors: true }).compile(configJsonSchema());
}

type Json = { [key: string]: unknown };

/** Every leaf and object of the schema with its path, for the description check. */
function* schemaNodes(node: Json, path: string): Generator<[string, Json]> {
  yield [path, node];
  for (const [key, child] of Object.entries((node.properties as Record<string, Json> | undefined) ?? {})) {
    yield* schemaNodes(child, path ? `${path}.${key}` : key);
  }
  if (node.items && typeof node.items === 'object') yield* schemaNodes(node.items as Json, `${path}[]`);
  if (node.additionalProperties && typeof node.additionalProperties === 'object') {
    yield* schemaNodes(node.additionalProperties as Json, `${path}.NAME`);
  }
  for (const option of (node.anyOf as Json[] | undefined) ?? []) yield* schemaNodes(option, path);
}

/** The schema node of a documented key path (`pools.NAME.outlier.ejectFor`, `listeners[].port`). */
function nodeAt(schema: Json, key: string): Json | undefined {
  let node: Json | undefined = schema;
  for (const part of key.split('.')) {
    const list = part.endsWith('[]');
    const name = list ? part.slice(0, -2) : part;
    node = name === 'NAME' ? (node?.additionalProperties as Json) : (node?.properties as Record<string, Json>)?.[name];
    if (list) node = node?.items as Json | undefined;
  }
  return node;
}

/**
 * The configuration reference's rows whose default is a literal (`5s`, or `127.0.0.1` / `8077` for two keys):
 * wherever the table lives (README.md, or a docs/ page), the header row starting `| key |`.
 */
function referenceDefaults(): { key: string; documented: string }[] {
  const files = [join(ROOT, 'README.md'), ...readdirSync(join(ROOT, 'docs')).map((f) => join(ROOT, 'docs', f))];
  const rows: { key: string; documented: string }[] = [];
  for (const file of files.filter((f) => f.endsWith('.md'))) {
    let inTable = false;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line.startsWith('| key |')) inTable = true;
      else if (!line.startsWith('|')) inTable = false;
      if (!inTable) continue;
      const [keyCell, defaultCell] = line.split(' | ').map((c) => c.replace(/^\| /, ''));
      const keys = [...(keyCell ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
      const defaults = (defaultCell ?? '').split(' / ').map((d) => /^`([^`]+)`$/.exec(d.trim())?.[1]);
      if (keys.length === 0 || defaults.length !== keys.length || defaults.some((d) => d === undefined)) continue;
      // `a.b` / `.c` names a sibling of a.b.
      const first = keys[0] as string;
      const parent = first.slice(0, first.lastIndexOf('.'));
      keys.forEach((k, i) => {
        rows.push({ key: k.startsWith('.') ? parent + k : k, documented: defaults[i] as string });
      });
    }
  }
  return rows;
}

describe('config.schema.json', () => {
  it('is what `wsgate schema` prints and the code generates', async () => {
    const shipped = readFileSync(join(ROOT, JSON_SCHEMA_FILE), 'utf8');
    expect(shipped, 'regenerate with: node dist/src/cli.js schema > config.schema.json').toBe(configJsonSchemaText());
    const { stdout } = await run(NODE_BIN, [CLI, 'schema']);
    expect(stdout).toBe(shipped);
  });

  it('is where config.example.yaml points editors, on its first line', () => {
    const first = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8').split('\n')[0];
    expect(first).toBe(`# yaml-language-server: $schema=./${JSON_SCHEMA_FILE}`);
  });

  it('describes every key, and gives defaults as a user writes them', () => {
    const schema = configJsonSchema() as Json;
    const keys = new Set<string>();
    const described = new Set<string>();
    for (const [path, node] of schemaNodes(schema, '')) {
      if (path !== '' && !path.endsWith('[]') && !path.endsWith('.NAME')) keys.add(path);
      if (typeof node.description === 'string') described.add(path);
    }
    expect(keys.size).toBeGreaterThan(50);
    expect([...keys].filter((k) => !described.has(k))).toEqual([]);
    const props = schema.properties as Record<string, Json>;
    const timeouts = (props.timeouts as Json).properties as Record<string, Json>;
    expect(timeouts.drain?.default).toBe('30s');
    expect(((props.admin as Json).properties as Record<string, Json>).port?.default).toBe(8077);
  });

  it('the configuration reference gives the same defaults', () => {
    const rows = referenceDefaults();
    expect(rows.length).toBeGreaterThan(30);
    const schema = configJsonSchema() as Json;
    const differing = rows.flatMap(({ key, documented }) => {
      const inSchema = nodeAt(schema, key)?.default;
      // A list is written in the reference as YAML's flow form: `[a, b]`.
      const shown = Array.isArray(inSchema) ? `[${inSchema.join(', ')}]` : String(inSchema);
      return shown === documented ? [] : [`${key}: documented \`${documented}\`, schema ${JSON.stringify(inSchema)}`];
    });
    expect(differing).toEqual([]);
  });

  it('a real validator accepts it, the example and every YAML snippet of the README and docs/', () => {
    const validate = validator();
    const example = parse(readFileSync(join(ROOT, 'config.example.yaml'), 'utf8'));
    expect(validate(example), JSON.stringify(validate.errors)).toBe(true);

    const docs = [join(ROOT, 'README.md')];
    const docsDir = join(ROOT, 'docs');
    if (existsSync(docsDir)) {
      for (const f of readdirSync(docsDir)) if (f.endsWith('.md')) docs.push(join(docsDir, f));
    }
    const base = { listeners: [{ name: 'l', port: 0 }], routes: [{ name: 'r', pool: 'p' }], pools: {} };
    let snippets = 0;
    for (const file of docs) {
      for (const [, block] of readFileSync(file, 'utf8').matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
        const doc = parse(block as string) as Json | null;
        // A snippet may show a few top-level keys: it is checked as they would sit in a complete file.
        const whole = { ...base, ...doc };
        snippets++;
        expect(validate(whole), `${file}:\n${block}\n${JSON.stringify(validate.errors)}`).toBe(true);
      }
    }
    expect(snippets).toBeGreaterThan(0);
  });
});

/** Configs, each valid or invalid in its shape; the validator and `wsgate --check` must agree on every one. */
const BASE = `listeners: [{ name: public, address: 127.0.0.1, port: 0 }]
admin: { address: 127.0.0.1, port: 0 }
routes: [{ name: main, match: { path: / }, pool: main }]
pools: { main: { backends: [ws://127.0.0.1:3001] } }
`;
const CASES: readonly { readonly name: string; readonly text: string; readonly valid: boolean }[] = [
  { name: 'the base', text: BASE, valid: true },
  {
    name: 'durations, sizes, workers auto',
    text: `${BASE}timeouts: { idle: 2m, drain: 1500 }\nworkers: auto\nlimits: { perConnection: { maxMessageBytes: 1MiB } }\n`,
    valid: true,
  },
  {
    name: 'weighted backends, hash keys',
    text: BASE.replace(
      'backends: [ws://127.0.0.1:3001]',
      'hashKey: "header:X-User", backends: [{ url: "wss://127.0.0.1:3002", weight: 2 }]',
    ),
    valid: true,
  },
  { name: 'unknown top-level key', text: `${BASE}route: []\n`, valid: false },
  { name: 'unknown nested key', text: BASE.replace('backends:', 'hashkey: ip, backends:'), valid: false },
  { name: 'workers: two', text: `${BASE}workers: two\n`, valid: false },
  { name: 'port as text', text: BASE.replace('port: 0 }]\nadmin', 'port: eighty }]\nadmin'), valid: false },
  { name: 'port out of range', text: BASE.replace('port: 0 }]\nadmin', 'port: 70000 }]\nadmin'), valid: false },
  { name: 'a duration without a unit we know', text: `${BASE}timeouts: { idle: 2 fortnights }\n`, valid: false },
  {
    name: 'a size without a unit we know',
    text: `${BASE}limits: { perConnection: { maxMessageBytes: 1 MegaByte } }\n`,
    valid: false,
  },
  { name: 'an enum value', text: `${BASE}log: { level: loud }\n`, valid: false },
  { name: 'no listeners', text: BASE.replace(/^listeners:.*\n/, ''), valid: false },
  { name: 'an empty listener list', text: BASE.replace(/^listeners:.*\n/, 'listeners: []\n'), valid: false },
  {
    name: 'a backend that is not ws://',
    text: BASE.replace('ws://127.0.0.1:3001', 'http://127.0.0.1:3001'),
    valid: false,
  },
  { name: 'a hash key kind', text: BASE.replace('backends:', 'hashKey: "heder:x", backends:'), valid: false },
  { name: 'a route path without /', text: BASE.replace('path: /', 'path: chat'), valid: false },
  {
    name: 'a short admin token',
    text: BASE.replace('port: 0 }\nroutes', 'port: 0, token: short }\nroutes'),
    valid: false,
  },
  {
    name: 'a bad pool name',
    text: BASE.replace('pools: { main:', 'pools: { "a b":').replace('pool: main', 'pool: "a b"'),
    valid: false,
  },
  { name: 'a list where a map goes', text: `${BASE}timeouts: [1]\n`, valid: false },
];

/** What `wsgate --check` decides: the loader it runs, in this process. */
function loads(text: string): boolean {
  try {
    parseConfig(text, join(tmpdir(), 'case.yaml'), {});
    return true;
  } catch (err) {
    if (err instanceof ConfigError) return false;
    throw err;
  }
}

describe('the validator and --check agree', () => {
  it('on every case, valid or not', () => {
    const validate = validator();
    const verdicts = CASES.map((c) => {
      const byValidator = validate(parse(c.text)) ? 'valid' : 'invalid';
      return `${c.name}: validator ${byValidator}, --check ${loads(c.text) ? 'valid' : 'invalid'}`;
    });
    const expected = CASES.map(
      (c) => `${c.name}: validator ${c.valid ? 'valid' : 'invalid'}, --check ${c.valid ? 'valid' : 'invalid'}`,
    );
    expect(verdicts).toEqual(expected);
  });

  it('the command itself, on a valid case and on invalid ones (exit 0 and 1)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsgate-schema-'));
    const picked = [CASES[1], CASES[3], CASES[5], CASES[8]] as (typeof CASES)[number][];
    const codes = await Promise.all(
      picked.map(async (c, i) => {
        const file = join(dir, `case-${i}.yaml`);
        writeFileSync(file, c.text);
        return run(NODE_BIN, [CLI, '--config', file, '--check']).then(
          () => 0,
          (err: { code: number }) => err.code,
        );
      }),
    );
    expect(codes).toEqual(picked.map((c) => (c.valid ? 0 : 1)));
  });
});
