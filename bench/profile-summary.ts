// Prints the top functions by self time of a V8 .cpuprofile (from `node --cpu-prof`), with categories.
// Usage: node dist/bench/profile-summary.js FILE.cpuprofile [TOP]

import { formatProfile, summariseCpuProfile } from './harness/cpu-profile.js';
import { PACKAGE_ROOT } from './harness/targets.js';

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 25);
process.stdout.write(`${formatProfile(summariseCpuProfile(file, PACKAGE_ROOT, top))}\n`);
