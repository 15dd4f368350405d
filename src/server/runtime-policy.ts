/**
 * The server's one door to the runtime policy room (src/ima/policy.ts, issue 12 §2): validating an
 * admin's policy text and checking bound entries with it. Compiled policies are cached by the
 * SHA-256 of their text (a fleet shares a few policies; each report would otherwise re-parse and
 * re-compile tens of thousands of digests).
 * @module
 */
import { createHash } from 'node:crypto';
import { BootkeyError } from '../errors.ts';
import { checkRuntimePolicy, compileRuntimePolicy, loadRuntimePolicy, type CompiledRuntimePolicy, type LearnedKey } from '../ima/policy.ts';
import type { TrustedImaEntries } from '../ima/trusted.ts';
import { ServerError } from './errors.ts';

export interface RuntimeFailure {
  index: number;
  path?: string;
  code: string;
  message: string;
}

const cache = new Map<string, CompiledRuntimePolicy>();
const CACHE_MAX = 64;

function compiled(text: string): CompiledRuntimePolicy {
  const key = createHash('sha256').update(text).digest('hex');
  let p = cache.get(key);
  if (!p) {
    p = compileRuntimePolicy(loadRuntimePolicy(text));
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(key, p);
  }
  return p;
}

/** Validates an admin's runtime policy (bootkey's format: `bootkey runtime-policy import` converts Keylime's). @throws ServerError BAD_RUNTIME_POLICY */
export function checkRuntimePolicyText(text: string): void {
  try {
    compiled(text);
  } catch (e) {
    if (e instanceof BootkeyError) throw new ServerError('BAD_RUNTIME_POLICY', `runtime policy: ${e.message}`);
    throw e;
  }
}

/** Every failing entry of `trusted` under the stored policy `text`, and the keys learned so far. */
export function checkRuntime(text: string, trusted: TrustedImaEntries, o: { bootAggregates?: string[]; learnedKeys: LearnedKey[] }): { failures: RuntimeFailure[]; more: number; learnedKeys: LearnedKey[] } {
  const r = checkRuntimePolicy(compiled(text), trusted, { bootAggregates: o.bootAggregates, learnedKeys: o.learnedKeys, maxFailures: 1000 });
  return { failures: r.failures.map((f) => ({ index: f.index, path: f.path, code: f.code, message: f.message })), more: r.moreFailures, learnedKeys: [...r.learnedKeys] };
}
