// Several hosts on one machine for tests that need them: a network namespace joined to this one by a veth pair,
// with addresses on both sides (several on ours, for clients from different source addresses). Made by the test,
// removed after it (deleting the namespace removes the pair). Needs root and iproute2.

import { execFileSync, spawnSync } from 'node:child_process';

export interface NetworkNamespace {
  readonly name: string;
  /** The /24 both sides are on, as "10.213.N". */
  readonly prefix: string;
  /** Our side's first address (prefix.1); `clientAddresses` are more of ours. */
  readonly hostAddress: string;
  readonly clientAddresses: readonly string[];
  /** Addresses inside the namespace. */
  readonly innerAddresses: readonly string[];
  /** A command line prefix that runs a program inside the namespace. */
  readonly exec: readonly string[];
  remove(): void;
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).status !== 0) return 'iproute2 (`ip`) is not installed';
  return undefined;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A namespace with `inner` addresses inside and `clients` extra addresses on our side, on 10.213.N.0/24 (N from the
 * process id, so parallel runs do not collide).
 */
export function createNamespace(options: { inner: number; clients: number }): NetworkNamespace {
  const id = process.pid % 100_000;
  const name = `wsgns${id}`;
  const ours = `wsga${id}`;
  const theirs = `wsgb${id}`;
  const prefix = `10.213.${(id % 250) + 1}`;
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  ip('netns', 'add', name);
  try {
    ip('link', 'add', ours, 'type', 'veth', 'peer', 'name', theirs);
    ip('link', 'set', theirs, 'netns', name);
    ip('addr', 'add', `${prefix}.1/24`, 'dev', ours);
    const clientAddresses = Array.from({ length: options.clients }, (_, i) => `${prefix}.${101 + i}`);
    for (const a of clientAddresses) ip('addr', 'add', `${a}/24`, 'dev', ours);
    ip('link', 'set', ours, 'up');
    const innerAddresses = Array.from({ length: options.inner }, (_, i) => `${prefix}.${2 + i}`);
    for (const a of innerAddresses) ip('-n', name, 'addr', 'add', `${a}/24`, 'dev', theirs);
    ip('-n', name, 'link', 'set', theirs, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    return {
      name,
      prefix,
      hostAddress: `${prefix}.1`,
      clientAddresses,
      innerAddresses,
      exec: ['ip', 'netns', 'exec', name],
      remove: () => {
        spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
        spawnSync('ip', ['link', 'del', ours], { stdio: 'ignore' });
      },
    };
  } catch (err) {
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', ours], { stdio: 'ignore' });
    throw err;
  }
}
