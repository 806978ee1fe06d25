// How demo backends name themselves (by port), shared by the demo servers and the CLI's demo help without
// loading the demo servers (and `ws`) into the proxy.

export function demoBackendId(port: number): string {
  return `backend-${port}`;
}
