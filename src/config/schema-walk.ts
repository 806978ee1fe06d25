// Reads the zod schema's structure: which keys an object accepts at a given path of the YAML document, so an
// unknown key can be compared with the keys that were allowed there.

import type { z } from 'zod';

type Def = z.core.$ZodTypeDef & Record<string, unknown>;
type Node = { readonly _zod: { readonly def: Def } };

/** The object schemas a value at `path` may be (several through a union), wrappers and transforms unwrapped. */
function objectsAt(node: Node, path: readonly PropertyKey[]): Node[] {
  const def = node._zod.def;
  switch (def.type) {
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
    case 'readonly':
      return objectsAt(def.innerType as Node, path);
    case 'pipe':
      return objectsAt(def.in as Node, path);
    case 'union':
      return (def.options as Node[]).flatMap((option) => objectsAt(option, path));
    default:
      break;
  }
  if (path.length === 0) return def.type === 'object' ? [node] : [];
  const [head, ...rest] = path;
  switch (def.type) {
    case 'object': {
      const child = (def.shape as Record<string, Node>)[String(head)];
      return child ? objectsAt(child, rest) : [];
    }
    case 'array':
      return typeof head === 'number' ? objectsAt(def.element as Node, rest) : [];
    case 'record':
      return objectsAt(def.valueType as Node, rest);
    default:
      return [];
  }
}

/** Keys accepted by the object at `path` of a document `schema` validates (empty if that is not an object). */
export function keysAllowedAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const keys = new Set<string>();
  for (const object of objectsAt(schema as unknown as Node, path)) {
    for (const key of Object.keys(object._zod.def.shape as object)) keys.add(key);
  }
  return [...keys];
}
