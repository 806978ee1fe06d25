// The config's JSON Schema, generated from the zod schema the loader uses (one source for what is valid, the
// descriptions and the defaults), for editors (`# yaml-language-server: $schema=...`) and `wsgate schema`.
// It checks the shape of a file; what needs more than its shape (a route's pool exists, TLS files can be read,
// names are unique, `${VAR}` substitution) is left to `wsgate --check`.

import { z } from 'zod';
import { configSchema } from './schema.js';

/** Where the shipped copy lives, relative to the package root (config.example.yaml points editors at it). */
export const JSON_SCHEMA_FILE = 'config.schema.json';

export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
}

/** The text of config.schema.json: what `wsgate schema` prints. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
