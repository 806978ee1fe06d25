// Checks deploy/kubernetes/*.yaml and the Dockerfile against each other and against the wsgate config the
// ConfigMap embeds: names that must agree (ports, probes, config path, DNS discovery), and the shutdown budget.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { ConfigError, type ConfigIssue, formatIssue, parseConfig } from '../../src/config/load.js';
import { NODE_FLAGS } from '../../src/control/node-flags.js';
import { ROOT } from '../helpers/paths.js';

const K8S_DIR = join(ROOT, 'deploy', 'kubernetes');

interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface K8sDoc {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  file: string;
  // biome-ignore lint/suspicious/noExplicitAny: manifests are free-form; each test narrows what it reads
  [key: string]: any;
}
interface ContainerPort {
  name?: string;
  containerPort: number;
}
interface HttpProbe {
  httpGet: { path: string; port: number | string };
}

function loadManifests(): K8sDoc[] {
  const docs: K8sDoc[] = [];
  for (const file of readdirSync(K8S_DIR)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const value: unknown = doc.toJS();
      if (value === null) continue; // empty document after a trailing `---`
      docs.push({ ...(value as Omit<K8sDoc, 'file'>), file } as K8sDoc);
    }
  }
  return docs;
}

const manifests = loadManifests();

function only(kind: string, name?: string): K8sDoc {
  const found = manifests.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  expect(found, `exactly one ${kind}${name ? ` named ${name}` : ''}`).toHaveLength(1);
  return found[0]!;
}

/** "30s", "1m", "500ms", "1h" → seconds. The config must spell durations with a unit. */
function durationSeconds(value: unknown): number {
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim()) : null;
  if (!match) throw new Error(`expected a duration like "30s", got ${JSON.stringify(value)}`);
  const scale = { ms: 0.001, s: 1, m: 60, h: 3600 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  return Number(match[1]) * scale;
}

interface PoolConfig {
  name?: string;
  hashKey?: string;
  discovery?: { dns: string; port: number; interval: string };
  balanceFactor?: number;
}
interface WsgateConfig {
  listeners: { name: string; address?: string; port: number; tls?: Record<string, unknown> }[];
  admin: { address: string; port: number };
  routes: { name: string; pool: string; match: { path?: string } }[];
  pools: Record<string, PoolConfig>;
  timeouts: { handshake: string; idle: string; drain: string };
  shutdown?: { acceptDelay?: string };
  workers?: number | 'auto';
}

const configMap = only('ConfigMap', 'wsgate-config');
const deployment = only('Deployment', 'wsgate');
const podSpec = deployment.spec.template.spec;
const container = podSpec.containers.find((c: { name: string }) => c.name === 'wsgate');
const configArg: string = container.args[container.args.indexOf('--config') + 1];
const embeddedConfig = parse(configMap.data[basename(configArg)]) as WsgateConfig;
const pools: PoolConfig[] = Object.entries(embeddedConfig.pools).map(([name, pool]) => ({ name, ...pool }));
const containerPorts: ContainerPort[] = container.ports;

function resolvePort(port: number | string): number {
  if (typeof port === 'number') return port;
  const named = containerPorts.find((p) => p.name === port);
  if (!named) throw new Error(`no container port named ${port}`);
  return named.containerPort;
}

describe('deploy/kubernetes manifests', () => {
  it('every document names its apiVersion, kind and metadata.name', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(5);
    for (const doc of manifests) {
      expect(typeof doc.apiVersion, `${doc.file} apiVersion`).toBe('string');
      expect(doc.apiVersion, `${doc.file} apiVersion`).toMatch(/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/);
      expect(doc.kind, `${doc.file} kind`).toMatch(/^[A-Z][A-Za-z]+$/);
      expect(doc.metadata?.name, `${doc.file} metadata.name`).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  it('kustomization lists every other manifest', () => {
    const kustomization = only('Kustomization');
    const others = [...new Set(manifests.filter((d) => d.kind !== 'Kustomization').map((d) => d.file))].sort();
    expect([...kustomization.resources].sort()).toEqual(others);
  });

  it('ConfigMap embeds a complete wsgate config', () => {
    expect(embeddedConfig.admin).toEqual({ address: '0.0.0.0', port: 8077 });
    expect(embeddedConfig.listeners.map((l) => [l.address, l.port])).toContainEqual(['0.0.0.0', 8080]);
    const chat = embeddedConfig.routes.find((r) => r.name === 'chat');
    expect(chat).toMatchObject({ pool: 'chat' });
    const pool = pools.find((p) => p.name === chat?.pool);
    expect(pool).toMatchObject({
      hashKey: 'header:x-user-id',
      balanceFactor: 1.25,
      discovery: { port: 3000, interval: '10s' },
    });
    expect(durationSeconds(embeddedConfig.timeouts.handshake)).toBe(5);
    expect(durationSeconds(embeddedConfig.timeouts.idle)).toBe(60);
    expect(durationSeconds(embeddedConfig.timeouts.drain)).toBe(30);
  });

  it('the embedded config passes the real config loader', () => {
    // The TLS files exist only in the pod (Secret wsgate-tls); without cert/key wsgate generates its own.
    const listeners = embeddedConfig.listeners.map((l) => (l.tls ? { ...l, tls: {} } : l));
    const text = stringify({ ...embeddedConfig, listeners });
    let issues: readonly ConfigIssue[] = [];
    try {
      parseConfig(text, join(K8S_DIR, 'configmap.yaml'), {});
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    // DNS discovery (pools.<name>.discovery instead of a static backends list) belongs to the pool work; until
    // the schema knows it, those are the only issues allowed. Everything else must already validate.
    const unrelated = issues.filter((i) => !/^pools\.chat\.(discovery|backends)$/.test(i.path));
    expect(unrelated.map(formatIssue)).toEqual([]);
  });

  it('Deployment runs wsgate with the mounted ConfigMap', () => {
    expect(deployment.apiVersion).toBe('apps/v1');
    expect(deployment.spec.replicas).toBe(2);
    expect(container.image).toBe('wsgate:latest');
    expect(container.args).toEqual(['--config', '/etc/wsgate/config.yaml']);
    const mount = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === dirname(configArg));
    expect(mount, `a volume mounted at ${dirname(configArg)}`).toBeDefined();
    expect(mount.subPath, 'subPath mounts never see ConfigMap updates').toBeUndefined();
    const volume = podSpec.volumes.find((v: { name: string }) => v.name === mount.name);
    expect(volume.configMap.name).toBe(configMap.metadata.name);
    expect(Object.keys(configMap.data)).toContain(basename(configArg));
    for (const [key, value] of Object.entries(deployment.spec.selector.matchLabels)) {
      expect(deployment.spec.template.metadata.labels[key]).toBe(value);
    }
  });

  it('container ports are the listener and admin ports of the embedded config', () => {
    const listenerPorts = embeddedConfig.listeners.map((l) => l.port);
    for (const port of containerPorts) {
      expect(port.name, `container port ${port.containerPort} has a name`).toMatch(/^[a-z0-9-]{1,15}$/);
      expect([...listenerPorts, embeddedConfig.admin.port]).toContain(port.containerPort);
    }
    expect(resolvePort('admin')).toBe(embeddedConfig.admin.port);
  });

  it('probes hit /readyz and /healthz on the admin port', () => {
    const readiness = container.readinessProbe as HttpProbe;
    const liveness = container.livenessProbe as HttpProbe;
    expect(readiness.httpGet.path).toBe('/readyz');
    expect(liveness.httpGet.path).toBe('/healthz');
    expect(resolvePort(readiness.httpGet.port)).toBe(embeddedConfig.admin.port);
    expect(resolvePort(liveness.httpGet.port)).toBe(embeddedConfig.admin.port);
  });

  it('Prometheus scrape annotations point at the admin port', () => {
    const annotations = deployment.spec.template.metadata.annotations;
    expect(annotations['prometheus.io/scrape']).toBe('true');
    expect(Number(annotations['prometheus.io/port'])).toBe(embeddedConfig.admin.port);
    expect(annotations['prometheus.io/path']).toBe('/metrics');
  });

  it('the grace period covers preStop, shutdown.acceptDelay and timeouts.drain, so a drain is never SIGKILLed', () => {
    const command: string[] = container.lifecycle.preStop.exec.command;
    expect(command[0]).toBe('sleep');
    const preStopSeconds = Number(command[1]);
    expect(preStopSeconds).toBeGreaterThan(0);
    const drainSeconds = durationSeconds(embeddedConfig.timeouts.drain);
    const acceptDelaySeconds = durationSeconds(embeddedConfig.shutdown?.acceptDelay ?? '0s');
    const grace: number = podSpec.terminationGracePeriodSeconds;
    expect(grace).toBe(45);
    expect(grace).toBeGreaterThan(drainSeconds);
    expect(grace).toBeGreaterThan(preStopSeconds + acceptDelaySeconds + drainSeconds);
  });

  it('runs one process per pod and scales with replicas', () => {
    expect(embeddedConfig.workers).toBe(1);
  });

  it('runs as a verifiable non-root user on a read-only root filesystem', () => {
    const pod = podSpec.securityContext;
    expect(pod.runAsNonRoot).toBe(true);
    // The image's USER is "node" (a name); the kubelet refuses runAsNonRoot without a numeric uid.
    expect(Number.isInteger(pod.runAsUser) && pod.runAsUser > 0).toBe(true);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.resources.requests.cpu, 'the HPA needs a CPU request').toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
  });

  it('the public Service targets named container ports and does not expose admin', () => {
    const service = only('Service', 'wsgate');
    const names = containerPorts.map((p) => p.name);
    const ports: { port: number; targetPort: string | number }[] = service.spec.ports;
    expect(ports.map((p) => [p.port, resolvePort(p.targetPort)])).toEqual([
      [80, 8080],
      [443, 8443],
    ]);
    for (const port of ports) expect(names).toContain(port.targetPort);
    expect(ports.map((p) => resolvePort(p.targetPort))).not.toContain(embeddedConfig.admin.port);
    for (const [key, value] of Object.entries(service.spec.selector)) {
      expect(deployment.spec.template.metadata.labels[key]).toBe(value);
    }
    expect(service.spec.externalTrafficPolicy).toBe('Local');
  });

  it('the HPA scales the Deployment on CPU and scales down slowly', () => {
    const hpa = only('HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toMatchObject({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    expect(hpa.spec.minReplicas).toBe(2);
    expect(hpa.spec.maxReplicas).toBe(10);
    expect(hpa.spec.metrics).toContainEqual({
      type: 'Resource',
      resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
    });
    expect(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds).toBeGreaterThanOrEqual(300);
  });

  it('the headless backend Service is what the chat pool discovers', () => {
    const headless = manifests.filter((d) => d.kind === 'Service' && d.spec.clusterIP === 'None');
    expect(headless).toHaveLength(1);
    const service = headless[0]!;
    const namespace = service.metadata.namespace ?? 'default';
    const discovery = pools.find((p) => p.name === 'chat')?.discovery;
    expect(discovery?.dns).toBe(`${service.metadata.name}.${namespace}.svc.cluster.local`);
    expect(service.spec.ports.map((p: { port: number }) => p.port)).toContain(discovery?.port);
  });
});

describe('Dockerfile', () => {
  // Join continuation lines so each instruction is one string.
  const instructions = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const all = (keyword: string) =>
    instructions
      .filter((l) => l.toUpperCase().startsWith(`${keyword} `))
      .map((l) => l.slice(keyword.length + 1).trim());
  const last = (keyword: string) => all(keyword).at(-1);

  it('builds in two stages on node:24-slim', () => {
    expect(instructions.join('\n')).toContain('node:24-slim');
    expect(all('FROM')).toHaveLength(2);
    expect(instructions.some((l) => /npm ci --omit=dev/.test(l))).toBe(true);
    expect(instructions.some((l) => /npm run build/.test(l))).toBe(true);
  });

  it('exposes every container port and runs as a non-root user', () => {
    const exposed = (last('EXPOSE') ?? '').split(/\s+/).map(Number);
    for (const port of containerPorts) expect(exposed).toContain(port.containerPort);
    expect(last('USER')).toMatch(/^(node|[1-9]\d*)(:.*)?$/);
    expect(last('STOPSIGNAL')).toBe('SIGTERM');
  });

  it('entrypoint, config path and health check agree with the Deployment', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(JSON.parse(last('ENTRYPOINT') ?? '[]')).toEqual(['node', ...NODE_FLAGS, pkg.bin.wsgate]);
    expect(JSON.parse(last('CMD') ?? '[]')).toEqual(container.args);
    const healthcheck = last('HEALTHCHECK') ?? '';
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/[\w/]*)/.exec(healthcheck);
    expect(url?.[1] && Number(url[1])).toBe(embeddedConfig.admin.port);
    expect(url?.[2]).toBe(container.livenessProbe.httpGet.path);
    expect(healthcheck, 'slim images have no curl').not.toMatch(/curl|wget/);
  });

  it('.dockerignore keeps host builds and history out of the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', '.git']) expect(ignored).toContain(entry);
  });
});
