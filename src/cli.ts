#!/usr/bin/env -S node --max-semi-space-size=2
// wsgate command line. Each command is loaded only when asked for, so `connect` (a client) runs on Node 20 too.
//   wsgate                        demo: config.example.yaml plus built-in demo backends
//   wsgate --config FILE          run on FILE (reloaded on SIGHUP, on change, on POST /reload)
//   wsgate --config FILE --check  validate FILE and exit 0 (valid) or 1 (invalid)
//   wsgate connect URL            interactive WebSocket client
//   wsgate ctl COMMAND            runtime control through the admin API (pools, drain, enable, weight, conns)
//   wsgate schema                 print the config's JSON Schema

import cluster from 'node:cluster';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Resolves with an exit status, or -1 when the process keeps running (a gateway, a cluster worker). */
async function main(argv: readonly string[]): Promise<number> {
  if (cluster.isWorker) {
    (await import('./cli/run.js')).runClusterWorker();
    return -1;
  }
  const [command, ...rest] = argv;
  switch (command) {
    case 'connect':
      return (await import('./cli/connect.js')).connectCommand(rest);
    case 'ctl':
      return (await import('./cli/ctl.js')).ctlCommand(rest);
    case 'schema':
      process.stdout.write((await import('./config/json-schema.js')).configJsonSchemaText());
      return 0;
    default:
      return (await import('./cli/serve.js')).serveCommand(argv, packageRoot);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit once what was written has left (stdout may be a pipe, where writes are asynchronous).
    if (code >= 0) process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  },
  (err: Error) => {
    process.stderr.write(`wsgate: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
