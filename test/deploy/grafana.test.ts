// Checks the Grafana dashboard, provisioning files, Prometheus example config and alerting rules: every pinned
// wsgate metric is charted with the dashboard's filters, every expression is valid PromQL (promtool), and the
// alerts fire on the situations they are named after (promtool test rules).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { IN_CI, ROOT } from '../helpers/paths.js';

const GRAFANA = join(ROOT, 'grafana');
const read = (path: string) => readFileSync(join(GRAFANA, path), 'utf8');

/** Every wsgate metric, with the labels it carries. Histograms also appear as _bucket/_sum/_count. */
const WSGATE_METRICS: Record<string, readonly string[]> = {
  // Foundation
  wsgate_connections_active: ['route', 'pool', 'backend'],
  wsgate_connections_total: ['route', 'pool', 'backend'],
  wsgate_handshake_rejections_total: ['route', 'status', 'reason'],
  wsgate_upstream_handshake_seconds: ['pool', 'backend'],
  wsgate_upstream_errors_total: ['pool', 'backend', 'reason'],
  wsgate_bytes_total: ['route', 'direction'],
  wsgate_hash_key_fallbacks_total: ['route'],
  // Frames
  wsgate_messages_total: ['route', 'direction', 'type'],
  wsgate_message_bytes: ['route', 'direction'],
  wsgate_closes_total: ['route', 'code', 'initiator'],
  wsgate_protocol_violations_total: ['route', 'direction', 'kind'],
  wsgate_limit_exceeded_total: ['route', 'limit', 'action'],
  wsgate_keepalive_timeouts_total: ['route', 'peer'],
  // Pools
  wsgate_backend_up: ['pool', 'backend'],
  wsgate_backend_health_checks_total: ['pool', 'backend', 'result'],
  wsgate_backend_ejections_total: ['pool', 'backend'],
  wsgate_rebalance_closes_total: ['pool'],
  wsgate_pool_backends: ['pool', 'state'],
  wsgate_backend_admin_state: ['pool', 'backend', 'state'],
  // Ops
  wsgate_config_reload_total: ['result'],
  wsgate_config_generation: [],
  wsgate_config_last_reload_success_timestamp_seconds: [],
  wsgate_workers: [],
  // Behind the load balancer
  wsgate_client_address_rejections_total: ['listener', 'reason'],
  wsgate_tls_handshakes_total: ['listener', 'resumed'],
  // Edge controls
  wsgate_auth_results_total: ['route', 'result'],
  wsgate_access_denied_total: ['route', 'reason'],
  wsgate_connection_rate_limited_total: ['scope'],
  wsgate_lifetime_closes_total: ['route', 'reason'],
};
const HISTOGRAMS = new Set(['wsgate_upstream_handshake_seconds', 'wsgate_message_bytes']);
const FILTER_LABELS = ['route', 'pool', 'backend'] as const;
/** Grafana variables an expression may use; a later test substitutes exactly these. */
const KNOWN_VARIABLES = new Set(['route', 'pool', 'backend', '__rate_interval', '__interval', '__range']);

/** The pinned metric a series name belongs to, or undefined if it is not a wsgate metric. */
function wsgateMetricOf(name: string): string | undefined {
  if (name in WSGATE_METRICS) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return HISTOGRAMS.has(base) ? base : undefined;
}
const isRuntimeMetric = (name: string) => /^(process|nodejs)_[a-z0-9_]+$/.test(name);

// ── A small PromQL reader: enough to find metric selectors and check nesting ──────────────────────

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2']);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
// Aggregations may put the grouping first (`sum by (le) (...)`), so they are not always followed by `(`.
const AGGREGATIONS = new Set(
  'sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio'.split(' '),
);
type Token = { kind: 'string' | 'braces' | 'range' | 'number' | 'ident' | 'punct'; text: string };

function tokenize(expr: string): Token[] {
  const pattern =
    /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})|(\[[^\]]*\])|(\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*)|([A-Za-z_:][A-Za-z0-9_:]*)|(\S)/gi;
  const tokens: Token[] = [];
  for (const m of expr.matchAll(pattern)) {
    if (m[1]) tokens.push({ kind: 'string', text: m[1] });
    else if (m[2]) tokens.push({ kind: 'braces', text: m[2] });
    else if (m[3]) tokens.push({ kind: 'range', text: m[3] });
    else if (m[4]) tokens.push({ kind: 'number', text: m[4] });
    else if (m[5]) tokens.push({ kind: 'ident', text: m[5] });
    else tokens.push({ kind: 'punct', text: m[6]! });
  }
  return tokens;
}

interface Selector {
  metric: string;
  matchers: string;
}

/** Metric selectors in an expression: identifiers that are not functions, keywords or grouping labels. */
function selectorsOf(expr: string): Selector[] {
  const tokens = tokenize(expr);
  const selectors: Selector[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind !== 'ident') continue;
    const next = tokens[i + 1];
    if (GROUPING.has(token.text)) {
      // Skip the label list: by (pool, backend)
      if (next?.text === '(') while (i < tokens.length && tokens[i]!.text !== ')') i++;
      continue;
    }
    if (next?.text === '(' || KEYWORDS.has(token.text.toLowerCase()) || AGGREGATIONS.has(token.text)) continue;
    selectors.push({ metric: token.text, matchers: next?.kind === 'braces' ? next.text : '' });
  }
  return selectors;
}

/** Throws unless (), {} and [] nest properly outside string literals. */
function assertBalanced(expr: string): void {
  const closers: Record<string, string> = { ')': '(', '}': '{', ']': '[' };
  const stack: string[] = [];
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (quote) {
      if (ch === '\\') i++;
      else if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if ('({['.includes(ch)) stack.push(ch);
    else if (ch in closers && stack.pop() !== closers[ch]) throw new Error(`unbalanced '${ch}' at ${i} in: ${expr}`);
  }
  if (quote || stack.length > 0) throw new Error(`unclosed ${quote ?? stack.join('')} in: ${expr}`);
}

/** What a dashboard-running test does before querying Prometheus: All → .*, intervals → 1m. */
function substituteVariables(expr: string): string {
  return expr.replace(/\$(__rate_interval|__interval|__range)\b/g, '1m').replace(/\$\{?(route|pool|backend)\}?/g, '.*');
}

// ── The dashboard ───────────────────────────────────────────────────────────────────────────────

interface DataSourceRef {
  type?: string;
  uid?: string;
}
interface Target {
  expr: string;
  refId: string;
  datasource?: DataSourceRef;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: DataSourceRef;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  type: string;
  name: string;
  query: string | { query: string };
  definition?: string;
  datasource?: DataSourceRef;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
  annotations: { list: { datasource?: DataSourceRef; expr?: string; builtIn?: number }[] };
}

const dashboard = JSON.parse(read('wsgate-dashboard.json')) as Dashboard;
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== 'row');
const panelExprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template literal
const DATASOURCE_VAR = '${datasource}';

describe('grafana/wsgate-dashboard.json', () => {
  it('is an importable dashboard with a stable uid', () => {
    expect(dashboard.uid).toBe('wsgate');
    expect(dashboard.title).toBe('wsgate');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect((dashboard as { id?: unknown }).id ?? null, 'exported dashboards carry no database id').toBeNull();
    const ids = allPanels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of allPanels) {
      expect(panel.gridPos.x + panel.gridPos.w, `${panel.title} fits the 24-column grid`).toBeLessThanOrEqual(24);
    }
  });

  it('has a Prometheus datasource variable and multi-value route/pool/backend variables', () => {
    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of FILTER_LABELS) {
      const variable = variables.get(name);
      expect(variable, `variable ${name}`).toMatchObject({
        type: 'query',
        multi: true,
        includeAll: true,
        allValue: '.*',
      });
      expect(variable?.datasource?.uid).toBe(DATASOURCE_VAR);
      const query = typeof variable?.query === 'string' ? variable.query : variable?.query.query;
      expect(query).toMatch(new RegExp(`^label_values\\((wsgate_[a-z_]+)(\\{[^}]*\\})?, ?${name}\\)$`));
      const metric = /label_values\((\w+)/.exec(query ?? '')?.[1] ?? '';
      expect(WSGATE_METRICS[metric], `${metric} carries label ${name}`).toContain(name);
    }
  });

  it('every panel and query uses the datasource variable', () => {
    for (const panel of allPanels) {
      if (panel.type === 'row' && panel.datasource === undefined) continue;
      expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE_VAR);
      for (const target of panel.targets ?? []) {
        if (target.datasource) expect(target.datasource.uid, `${panel.title} ${target.refId}`).toBe(DATASOURCE_VAR);
      }
    }
    for (const annotation of dashboard.annotations.list.filter((a) => !a.builtIn)) {
      expect(annotation.datasource?.uid).toBe(DATASOURCE_VAR);
    }
    expect(queryPanels.length).toBeGreaterThanOrEqual(25);
    for (const panel of queryPanels) expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
  });

  it('charts every pinned wsgate metric', () => {
    const charted = new Set(
      panelExprs.flatMap(({ expr }) => selectorsOf(expr).map((s) => wsgateMetricOf(s.metric) ?? s.metric)),
    );
    const missing = Object.keys(WSGATE_METRICS).filter((m) => !charted.has(m));
    expect(missing).toEqual([]);
    for (const runtime of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(charted).toContain(runtime);
    }
  });

  it('every expression is balanced and names only known metrics and variables', () => {
    for (const { panel, expr } of panelExprs) {
      expect(() => assertBalanced(expr), panel).not.toThrow();
      for (const { metric } of selectorsOf(expr)) {
        expect(
          wsgateMetricOf(metric) !== undefined || isRuntimeMetric(metric),
          `${panel}: unknown metric ${metric}`,
        ).toBe(true);
      }
      for (const [, name] of expr.matchAll(/\$\{?(\w+)\}?/g)) {
        expect(KNOWN_VARIABLES.has(name!), `${panel}: unknown variable $${name}`).toBe(true);
      }
      expect(substituteVariables(expr), panel).not.toContain('$');
    }
  });

  it('filters every wsgate selector by the route/pool/backend variables it has labels for', () => {
    for (const { panel, expr } of panelExprs) {
      for (const { metric, matchers } of selectorsOf(expr)) {
        const labels = WSGATE_METRICS[wsgateMetricOf(metric) ?? ''] ?? [];
        for (const label of FILTER_LABELS.filter((l) => labels.includes(l))) {
          expect(matchers, `${panel}: ${metric} filtered by $${label}`).toMatch(
            new RegExp(`[{,]\\s*${label}\\s*=~\\s*"\\$\\{?${label}\\}?"`),
          );
        }
      }
    }
  });

  it('rates and increases use $__rate_interval, histograms are aggregated by le', () => {
    for (const { panel, expr } of panelExprs) {
      for (const token of tokenize(expr).filter((t) => t.kind === 'range')) {
        expect(token.text, panel).toBe('[$__rate_interval]');
      }
      if (expr.includes('histogram_quantile')) {
        expect(expr, panel).toMatch(/histogram_quantile\(0?\.\d+, sum by \([^)]*\ble\b[^)]*\) \(rate\(\w+_bucket\{/);
      }
    }
    const titles = queryPanels.map((p) => p.title);
    const latency = queryPanels.find((p) => p.title === 'Upstream handshake latency');
    expect(latency?.targets?.map((t) => /histogram_quantile\(([\d.]+)/.exec(t.expr)?.[1])).toEqual([
      '0.5',
      '0.95',
      '0.99',
    ]);
    expect(titles).toEqual(expect.arrayContaining(['Backend up/down', 'Closes by code', 'Config reloads by result']));
  });
});

// ── Provisioning and the Prometheus example ─────────────────────────────────────────────────────

describe('grafana provisioning and prometheus.yml', () => {
  const datasources = parse(read('provisioning/datasources/prometheus.yaml'));
  const providers = parse(read('provisioning/dashboards/wsgate.yaml'));
  const prometheus = parse(read('prometheus.yml'));

  it('provisions a Prometheus datasource at prometheus:9090', () => {
    expect(datasources.apiVersion).toBe(1);
    expect(datasources.datasources).toEqual([
      expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090', access: 'proxy' }),
    ]);
  });

  it('loads dashboards from /var/lib/grafana/dashboards', () => {
    expect(providers.apiVersion).toBe(1);
    expect(providers.providers).toEqual([
      expect.objectContaining({
        type: 'file',
        options: expect.objectContaining({ path: '/var/lib/grafana/dashboards' }),
      }),
    ]);
  });

  it('scrapes wsgate:8077 and loads alerts.yml', () => {
    expect(prometheus.rule_files).toContain('alerts.yml');
    const job = prometheus.scrape_configs.find((j: { job_name: string }) => j.job_name === 'wsgate');
    expect(job.static_configs[0].targets).toEqual(['wsgate:8077']);
    // $__rate_interval is derived from the datasource's scrape interval; they must agree.
    expect(datasources.datasources[0].jsonData.timeInterval).toBe(prometheus.global.scrape_interval);
  });
});

// ── Alerting rules ──────────────────────────────────────────────────────────────────────────────

interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: string };
  annotations: { summary: string; description?: string };
}
const alertFile = parse(read('alerts.yml')) as { groups: { name: string; rules: AlertRule[] }[] };
const alertRules = alertFile.groups.flatMap((g) => g.rules);

describe('grafana/alerts.yml', () => {
  it('each rule has alert, expr, for, a severity and a summary', () => {
    for (const rule of alertRules) {
      expect(rule.alert).toMatch(/^Wsgate[A-Z]\w+$/);
      expect(typeof rule.expr, rule.alert).toBe('string');
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      expect(() => assertBalanced(rule.expr), rule.alert).not.toThrow();
      for (const { metric } of selectorsOf(rule.expr)) {
        expect(wsgateMetricOf(metric) !== undefined || isRuntimeMetric(metric), `${rule.alert}: ${metric}`).toBe(true);
      }
    }
  });

  it('covers the situations operators page on', () => {
    expect(alertRules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'WsgateBackendDown',
        'WsgateAllBackendsDown',
        'WsgateReloadFailing',
        'WsgateHandshakeRejectionSpike',
        'WsgateAuthFailuresSpike',
        'WsgateUpstreamErrors',
        'WsgateEventLoopLag',
      ]),
    );
    const byName = new Map(alertRules.map((r) => [r.alert, r]));
    expect(byName.get('WsgateBackendDown')).toMatchObject({ expr: 'wsgate_backend_up == 0', for: '1m' });
    expect(byName.get('WsgateEventLoopLag')?.expr).toMatch(/nodejs_eventloop_lag_p99_seconds > 0\.1/);
    expect(byName.get('WsgateEventLoopLag')?.for).toBe('5m');
  });
});

// ── promtool: real PromQL parsing and alert behaviour ───────────────────────────────────────────

function findPromtool(): string | undefined {
  const candidates = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'].map((dir) =>
    join(dir, 'promtool'),
  );
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false; // not in this directory; try the next
    }
  });
}

const PROMTOOL = findPromtool();
const MISSING_PROMTOOL =
  'promtool not found on PATH or at /usr/bin/promtool (Debian/Ubuntu: apt-get install -y prometheus)';

function promtool(...args: string[]): void {
  const result = spawnSync(PROMTOOL!, args, { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  const output = `promtool ${args.join(' ')} exited ${result.status}\n${result.stdout}${result.stderr}`;
  expect(result.error, output).toBeUndefined();
  expect(result.status, output).toBe(0);
}

/**
 * promtool unit tests for the alerts. Annotations are stripped from a copy of the rules (promtool compares them
 * verbatim), so these pin down when each alert fires and with which labels, not its wording.
 */
const ALERT_UNIT_TESTS = [
  {
    name: 'a backend down for a minute pages; a flap does not',
    interval: '1m',
    input_series: [
      { series: 'wsgate_backend_up{job="wsgate",instance="a:8077",pool="chat",backend="b1"}', values: '1 1 0 0 0 0 0' },
      { series: 'wsgate_backend_up{job="wsgate",instance="a:8077",pool="chat",backend="b2"}', values: '1 0 1 1 1 1 1' },
      {
        series: 'wsgate_pool_backends{job="wsgate",instance="a:8077",pool="chat",state="healthy"}',
        values: '2 1 1 1 1 1 1',
      },
    ],
    alert_rule_test: [
      { eval_time: '2m', alertname: 'WsgateBackendDown', exp_alerts: [] },
      {
        eval_time: '5m',
        alertname: 'WsgateBackendDown',
        exp_alerts: [
          { exp_labels: { severity: 'warning', job: 'wsgate', instance: 'a:8077', pool: 'chat', backend: 'b1' } },
        ],
      },
      { eval_time: '5m', alertname: 'WsgateAllBackendsDown', exp_alerts: [] },
    ],
  },
  {
    name: 'a pool with every backend down, or with none discovered, is critical',
    interval: '1m',
    input_series: [
      { series: 'wsgate_backend_up{job="wsgate",instance="a:8077",pool="chat",backend="b1"}', values: '0x5' },
      { series: 'wsgate_backend_up{job="wsgate",instance="a:8077",pool="chat",backend="b2"}', values: '0x5' },
      { series: 'wsgate_pool_backends{job="wsgate",instance="a:8077",pool="chat",state="healthy"}', values: '0x5' },
      { series: 'wsgate_pool_backends{job="wsgate",instance="a:8077",pool="empty",state="healthy"}', values: '0x5' },
      { series: 'wsgate_backend_up{job="wsgate",instance="a:8077",pool="fine",backend="b3"}', values: '1x5' },
      { series: 'wsgate_pool_backends{job="wsgate",instance="a:8077",pool="fine",state="healthy"}', values: '1x5' },
    ],
    alert_rule_test: [
      {
        eval_time: '3m',
        alertname: 'WsgateAllBackendsDown',
        exp_alerts: ['chat', 'empty'].map((pool) => ({
          exp_labels: { severity: 'critical', job: 'wsgate', instance: 'a:8077', pool },
        })),
      },
    ],
  },
  {
    name: 'a failed reload alerts until it leaves the 15m window',
    interval: '1m',
    input_series: [
      { series: 'wsgate_config_reload_total{job="wsgate",instance="a:8077",result="failure"}', values: '0 0 1x30' },
      { series: 'wsgate_config_reload_total{job="wsgate",instance="a:8077",result="success"}', values: '1x32' },
    ],
    alert_rule_test: [
      {
        eval_time: '5m',
        alertname: 'WsgateReloadFailing',
        exp_alerts: [{ exp_labels: { severity: 'warning', job: 'wsgate', instance: 'a:8077', result: 'failure' } }],
      },
      { eval_time: '25m', alertname: 'WsgateReloadFailing', exp_alerts: [] },
    ],
  },
  {
    name: 'rejections spike relative to accepted connections, above a noise floor',
    interval: '1m',
    input_series: [
      // chat: 2 rejections/s against 1 accepted/s.
      {
        series:
          'wsgate_handshake_rejections_total{job="wsgate",instance="a:8077",route="chat",status="503",reason="no_healthy_backend"}',
        values: '0+120x15',
      },
      {
        series: 'wsgate_connections_total{job="wsgate",instance="a:8077",route="chat",pool="chat",backend="b1"}',
        values: '0+60x15',
      },
      // ghost: only rejections, no connection series at all.
      {
        series:
          'wsgate_handshake_rejections_total{job="wsgate",instance="a:8077",route="ghost",status="403",reason="origin_not_allowed"}',
        values: '0+300x15',
      },
      // quiet: every attempt rejected, but only 0.5/s.
      {
        series:
          'wsgate_handshake_rejections_total{job="wsgate",instance="a:8077",route="quiet",status="429",reason="too_many_from_ip"}',
        values: '0+30x15',
      },
      // busy: 1.5 rejections/s against 100 accepted/s.
      {
        series:
          'wsgate_handshake_rejections_total{job="wsgate",instance="a:8077",route="busy",status="400",reason="bad_key"}',
        values: '0+90x15',
      },
      {
        series: 'wsgate_connections_total{job="wsgate",instance="a:8077",route="busy",pool="chat",backend="b1"}',
        values: '0+6000x15',
      },
    ],
    alert_rule_test: [
      { eval_time: '4m', alertname: 'WsgateHandshakeRejectionSpike', exp_alerts: [] },
      {
        eval_time: '10m',
        alertname: 'WsgateHandshakeRejectionSpike',
        exp_alerts: ['chat', 'ghost'].map((route) => ({
          exp_labels: { severity: 'warning', job: 'wsgate', instance: 'a:8077', route },
        })),
      },
    ],
  },
  {
    name: 'token failures spike relative to all token checks, above a noise floor',
    interval: '1m',
    input_series: [
      // chat: 2 expired tokens/s against 1 accepted/s, and a few unknown keys.
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="chat",result="expired"}',
        values: '0+120x15',
      },
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="chat",result="unknown_key"}',
        values: '0+6x15',
      },
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="chat",result="ok"}',
        values: '0+60x15',
      },
      // quiet: every token refused, but only 0.5/s.
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="quiet",result="missing"}',
        values: '0+30x15',
      },
      { series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="quiet",result="ok"}', values: '0x15' },
      // busy: 1.5 refused/s against 100 accepted/s.
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="busy",result="invalid"}',
        values: '0+90x15',
      },
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="busy",result="ok"}',
        values: '0+6000x15',
      },
      // idle: a route with auth that nobody uses (its series sit at 0).
      {
        series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="idle",result="expired"}',
        values: '0x15',
      },
      { series: 'wsgate_auth_results_total{job="wsgate",instance="a:8077",route="idle",result="ok"}', values: '0x15' },
    ],
    alert_rule_test: [
      { eval_time: '4m', alertname: 'WsgateAuthFailuresSpike', exp_alerts: [] },
      {
        eval_time: '10m',
        alertname: 'WsgateAuthFailuresSpike',
        exp_alerts: [{ exp_labels: { severity: 'warning', job: 'wsgate', instance: 'a:8077', route: 'chat' } }],
      },
    ],
  },
  {
    name: 'upstream errors alert on a failing backend, not on a rare failure',
    interval: '1m',
    input_series: [
      {
        series:
          'wsgate_upstream_errors_total{job="wsgate",instance="a:8077",pool="chat",backend="b1",reason="connect_failed"}',
        values: '0+30x15',
      },
      {
        series: 'wsgate_connections_total{job="wsgate",instance="a:8077",route="chat",pool="chat",backend="b1"}',
        values: '0+60x15',
      },
      {
        series:
          'wsgate_upstream_errors_total{job="wsgate",instance="a:8077",pool="chat",backend="b2",reason="timeout"}',
        values: '0+3x15',
      },
      {
        series: 'wsgate_connections_total{job="wsgate",instance="a:8077",route="chat",pool="chat",backend="b2"}',
        values: '0+60x15',
      },
    ],
    alert_rule_test: [
      {
        eval_time: '10m',
        alertname: 'WsgateUpstreamErrors',
        exp_alerts: [
          { exp_labels: { severity: 'warning', job: 'wsgate', instance: 'a:8077', pool: 'chat', backend: 'b1' } },
        ],
      },
    ],
  },
  {
    name: 'event-loop lag alerts for wsgate processes only',
    interval: '1m',
    input_series: [
      { series: 'nodejs_eventloop_lag_p99_seconds{job="wsgate",instance="a:8077"}', values: '0.2x10' },
      { series: 'wsgate_config_generation{job="wsgate",instance="a:8077"}', values: '1x10' },
      { series: 'nodejs_eventloop_lag_p99_seconds{job="wsgate",instance="b:8077"}', values: '0.05x10' },
      { series: 'wsgate_config_generation{job="wsgate",instance="b:8077"}', values: '1x10' },
      // Another Node.js service scraped by the same Prometheus.
      { series: 'nodejs_eventloop_lag_p99_seconds{job="other",instance="other:3000"}', values: '0.5x10' },
    ],
    alert_rule_test: [
      { eval_time: '3m', alertname: 'WsgateEventLoopLag', exp_alerts: [] },
      {
        eval_time: '7m',
        alertname: 'WsgateEventLoopLag',
        exp_alerts: [{ exp_labels: { severity: 'warning', job: 'wsgate', instance: 'a:8077' } }],
      },
    ],
  },
];

describe('promtool', () => {
  if (PROMTOOL) {
    const work = mkdtempSync(join(tmpdir(), 'wsgate-promtool-'));
    afterAll(() => rmSync(work, { recursive: true, force: true }));

    it('accepts grafana/alerts.yml', () => {
      promtool('check', 'rules', 'grafana/alerts.yml');
    });

    it('accepts grafana/prometheus.yml', () => {
      promtool('check', 'config', 'grafana/prometheus.yml');
    });

    it('parses every dashboard expression after variable substitution', () => {
      const exprs = [
        ...panelExprs.map((p) => p.expr),
        ...dashboard.annotations.list.flatMap((a) => (a.expr ? [a.expr] : [])),
      ];
      const rules = exprs.map((expr, i) => ({ record: `dashboard:expr_${i}`, expr: substituteVariables(expr) }));
      const file = join(work, 'dashboard-rules.yml');
      writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
      promtool('check', 'rules', file);
    });

    it('fires each alert when, and only when, it should', () => {
      const stripped = {
        groups: alertFile.groups.map((g) => ({ ...g, rules: g.rules.map(({ annotations: _, ...rule }) => rule) })),
      };
      const rulesFile = join(work, 'alerts-without-annotations.yml');
      writeFileSync(rulesFile, stringify(stripped));
      const testFile = join(work, 'alerts-test.yml');
      writeFileSync(
        testFile,
        stringify({ rule_files: [rulesFile], evaluation_interval: '1m', tests: ALERT_UNIT_TESTS }),
      );
      promtool('test', 'rules', testFile);
    });
  } else if (IN_CI) {
    it('promtool is installed (required when CI is set)', () => {
      throw new Error(`${MISSING_PROMTOOL}; CI must install it so the PromQL checks run`);
    });
  } else {
    it.skip(`promtool checks skipped: ${MISSING_PROMTOOL}`, () => {});
  }
});
