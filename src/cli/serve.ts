// `wsgate [--config FILE] [--check] [--no-watch] [--demo]`: reads and validates the config (all `--check` loads),
// then starts the demo backends (without --config, or with --demo) and wsgate itself (run.ts). Anything that stops
// the start is one line naming what failed and the key to change, and exit status 1.

import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, formatIssueWithSource, parseConfig } from '../config/load.js';
import { fileProblem } from '../config/messages.js';
import type { Config } from '../config/types.js';
import { VERSION } from '../control/version.js';
import { DemoBackendsFailed, demoBackendPorts, startDemoBackends } from './demo.js';
import { describeDemoBackendError, failWith, StartFailure, startFailureText } from './startup-errors.js';

export const HELP = `wsgate: WebSocket reverse proxy and load balancer

Usage: wsgate [--config FILE] [--check] [--no-watch] [--demo]
       wsgate connect URL [options]   interactive WebSocket client (wsgate connect --help)
       wsgate schema                  print the config's JSON Schema (also config.schema.json)

  -c, --config FILE   configuration file (YAML). Without it, wsgate runs the demo: config.example.yaml and
                      demo backends on the loopback ports its pools name (127.0.0.1:3001-3003)
      --demo          with --config: start demo backends for FILE's loopback backends too, and print the banner
      --check         validate the configuration and exit (0 valid, 1 invalid)
      --no-watch      do not reload when the config file or its TLS files change
  -h, --help          show this help
  -v, --version       print the version

Reload: SIGHUP, a change of the config file, or POST /reload on the admin listener.
  An invalid file is reported and never replaces the running configuration.
Signals: SIGTERM/SIGINT drain and exit 0 (a second one exits at once).
Docs: README.md, docs/getting-started.md, docs/admin-api.md`;

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean' },
      demo: { type: 'boolean' },
      'no-watch': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
    strict: true,
    allowPositionals: false,
  });
}

/** Runs wsgate; resolves with an exit status, or -1 once running (the process then lives until a signal). */
export async function serveCommand(argv: readonly string[], packageRoot: string): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    process.stderr.write(`wsgate: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (args.values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (args.values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const demo = args.values.config === undefined || args.values.demo === true;
  const file = resolvePath(args.values.config ?? join(packageRoot, 'config.example.yaml'));

  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(
      `wsgate: cannot read config file ${file} (--config): ${fileProblem(err as NodeJS.ErrnoException)}\n`,
    );
    return 1;
  }
  let config: Config;
  try {
    config = parseConfig(text, file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`wsgate: invalid configuration:\n${err.issues.map(formatIssueWithSource).join('\n')}\n`);
    return 1;
  }
  if (args.values.check) {
    process.stdout.write(`${file}: configuration is valid\n`);
    return 0;
  }

  let demoBackends: ChildProcess | undefined;
  try {
    if (demo) {
      demoBackends = await startDemoBackends(packageRoot, demoBackendPorts(config)).catch(
        failWith((err) =>
          err instanceof DemoBackendsFailed ? describeDemoBackendError(err.failure, config) : undefined,
        ),
      );
    }
    // Loaded only to run: --check needs none of it.
    const { run } = await import('./run.js');
    await run({ file, text, config, watch: args.values['no-watch'] !== true, demo, demoBackends });
  } catch (err) {
    if (!(err instanceof StartFailure)) throw err;
    process.stderr.write(startFailureText(err, config.log.level));
    demoBackends?.kill();
    return 1;
  }
  return -1;
}
