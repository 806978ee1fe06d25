// Where the repository and its Node live, for tests that read its files or start it in a child process.

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Node 24 from node_modules (type stripping); the system node may be older. */
export const NODE_BIN = join(ROOT, 'node_modules', '.bin', 'node');

/** Running in CI (`CI` set and not false): tests that need a system binary fail instead of skipping there. */
export const IN_CI = !['', '0', 'false'].includes((process.env.CI ?? '').toLowerCase());
