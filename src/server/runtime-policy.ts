/**
 * The server's one door to the runtime policy room (src/ima/policy.ts, issue 12 §2): validating an
 * admin's policy text, and the compiled policies by the SHA-256 of their text. A runtime policy
 * is stored once (content-addressed, runtime_policies) and each machine's runtime row names it by
 * hash, so a fleet sharing one policy of tens of thousands of digests stores and reads it once,
 * and a report costs no parsing: the compiled policy stays in a small per-process cache.
 * @module
 */
import { createHash } from 'node:crypto';
import { BootkeyError } from '../errors.ts';
import { checkRuntimePolicy, compileRuntimePolicy, loadRuntimePolicy, type CompiledRuntimePolicy, type LearnedKey } from '../ima/policy.ts';
import type { TrustedImaEntries } from '../ima/trusted.ts';
import { ServerError } from './errors.ts';

export type { CompiledRuntimePolicy };

export interface RuntimeFailure {
  index: number;
  path?: string;
  code: string;
  message: string;
}

const cache = new Map<string, CompiledRuntimePolicy>();
const CACHE_MAX = 64;

export function runtimePolicyHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function compile(text: string): CompiledRuntimePolicy {
  try {
    return compileRuntimePolicy(loadRuntimePolicy(text));
  } catch (e) {
    if (e instanceof BootkeyError) throw new ServerError('BAD_RUNTIME_POLICY', `runtime policy: ${e.message}`);
    throw e;
  }
}

function remember(hash: string, p: CompiledRuntimePolicy): void {
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(hash, p);
}

/** Validates an admin's runtime policy (bootkey's format: `bootkey runtime-policy import` converts Keylime's) and returns its hash. @throws ServerError BAD_RUNTIME_POLICY */
export function checkRuntimePolicyText(text: string): string {
  const hash = runtimePolicyHash(text);
  if (!cache.has(hash)) remember(hash, compile(text));
  return hash;
}

/** The compiled policy of `hash`; `load` reads its text from the store on a cache miss. @throws ServerError INTERNAL when the text is missing or not that hash */
export async function compiledRuntimePolicy(hash: string, load: (hash: string) => Promise<string | undefined>): Promise<CompiledRuntimePolicy> {
  const hit = cache.get(hash);
  if (hit) return hit;
  const text = await load(hash);
  if (text === undefined || runtimePolicyHash(text) !== hash) throw new ServerError('INTERNAL', `runtime policy ${hash.slice(0, 16)}… is missing from the store`);
  const p = compile(text);
  remember(hash, p);
  return p;
}

/** Every failing entry of `trusted` under the policy, and the keys learned so far. */
export function checkRuntime(policy: CompiledRuntimePolicy, trusted: TrustedImaEntries, o: { bootAggregates?: string[]; learnedKeys: LearnedKey[] }): { failures: RuntimeFailure[]; more: number; learnedKeys: LearnedKey[] } {
  const r = checkRuntimePolicy(policy, trusted, { bootAggregates: o.bootAggregates, learnedKeys: o.learnedKeys, maxFailures: 1000 });
  return { failures: r.failures.map((f) => ({ index: f.index, path: f.path, code: f.code, message: f.message })), more: r.moreFailures, learnedKeys: [...r.learnedKeys] };
}
