/**
 * Token buckets keyed by peer address or machine id. In process memory: each replica limits
 * on its own, so N replicas allow up to N times the rate (documented in docs/SERVER.md);
 * nothing else depends on it, and losing it on restart is harmless.
 * @module
 */

export interface BucketConfig {
  /** Bucket size: requests allowed in a burst. */
  burst: number;
  /** Refill rate in requests per second. */
  perSecond: number;
}

export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();
  constructor(private readonly cfg: BucketConfig, private readonly now: () => number = Date.now, private readonly maxKeys = 100_000) {}

  /** Takes one token for `key`; false when the bucket is empty. */
  take(key: string): boolean {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.prune(t);
      b = { tokens: this.cfg.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.cfg.burst, b.tokens + ((t - b.at) / 1000) * this.cfg.perSecond);
      b.at = t;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Drops full buckets (and, if still too many, all of them). */
  prune(t = this.now()): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((t - b.at) / 1000) * this.cfg.perSecond >= this.cfg.burst) this.buckets.delete(k);
    }
    if (this.buckets.size >= this.maxKeys) this.buckets.clear();
  }
}
