// Module hooks for child processes that run the TypeScript sources directly (Node 24 strips types): sources
// import './x.js' as TypeScript's nodenext wants, so map such a specifier to './x.ts' when that file exists.
// Use: node --import ./test/helpers/ts-hooks.ts src/cli.ts

import { existsSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parent = context.parentURL;
    if (parent?.endsWith('.ts') && specifier.startsWith('.') && specifier.endsWith('.js')) {
      const candidate = new URL(`${specifier.slice(0, -3)}.ts`, parent);
      if (existsSync(fileURLToPath(candidate))) return nextResolve(candidate.href, context);
    }
    return nextResolve(specifier, context);
  },
});
