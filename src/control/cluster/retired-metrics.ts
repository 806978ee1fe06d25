// Counters and histograms of workers that died, at their last scraped values, summed: kept in every /metrics so
// that no counter total goes back when a worker is replaced (Prometheus would read that as a reset and rate()
// would jump). A dead worker's gauges go with it.

import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from '../../observe/log.js';

/** A registry metric as getMetricsAsJSON gives it (what AggregatorRegistry.aggregate takes). */
export type MetricJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/**
 * Counters and histograms only grow; a dead worker's may stay in the totals. (prom-client's typings declare a
 * numeric enum for `type`; at run time it is the name.)
 */
function onlyGrows(metric: MetricJson): boolean {
  const type = String(metric.type);
  return type === 'counter' || type === 'histogram';
}

export class RetiredMetrics {
  /** A chain, so that deaths close together merge in order. */
  private sum: Promise<MetricJson[]> = Promise.resolve([]);
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  /** Adds a dead worker's last scrape (`worker` names it in the log). */
  retire(worker: number, lastScrape: readonly MetricJson[]): void {
    const kept = lastScrape.filter(onlyGrows);
    this.sum = this.sum.then(async (sofar) => {
      try {
        return await AggregatorRegistry.aggregate([sofar, kept]).getMetricsAsJSON();
      } catch (err) {
        this.log.warn({ worker, err }, 'could not keep a dead worker’s counters; they leave the totals');
        return sofar;
      }
    });
  }

  /** The dead workers' counters and histograms so far. */
  current(): Promise<MetricJson[]> {
    return this.sum;
  }
}
