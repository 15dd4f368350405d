/**
 * The server's one door to the runtime policy room (src/ima/policy.ts, issue 12 §2): loading an
 * admin's policy text and checking bound entries with it. Parsed policies are cached by the
 * SHA-256 of their text (a fleet shares a few policies; each report would otherwise re-parse
 * tens of thousands of digests).
 * @module
 */
import { createHash } from 'node:crypto';
import { BootkeyError } from '../errors.ts';
import { checkRuntimePolicy, compileRuntimePolicy, loadRuntimePolicy as loadPolicyText, RUNTIME_POLICY_FORMAT, type CompiledRuntimePolicy } from '../ima/policy.ts';
import { importKeylimePolicy } from '../ima/keylime.ts';
import type { TrustedImaEntries } from '../ima/trusted.ts';
import { ServerError } from './errors.ts';

export interface RuntimeFailure {
  index: number;
  path?: string;
  code: string;
  message: string;
}

const cache = new Map<string, CompiledRuntimePolicy>();

/** bootkey's format, else Keylime's runtime policy JSON (imported); compiled once. */
function parseRuntimePolicy(text: string): CompiledRuntimePolicy {
  const v = JSON.parse(text) as { format?: unknown };
  return compileRuntimePolicy(v?.format === RUNTIME_POLICY_FORMAT ? loadPolicyText(text) : importKeylimePolicy(v).policy);
}
const CACHE_MAX = 64;

function parsed(text: string): CompiledRuntimePolicy {
  const key = createHash('sha256').update(text).digest('hex');
  let p = cache.get(key);
  if (!p) {
    p = parseRuntimePolicy(text);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, p);
  }
  return p;
}

/** Validates an admin's runtime policy (Keylime's JSON or bootkey's). @throws ServerError BAD_RUNTIME_POLICY */
export function loadRuntimePolicy(text: string): void {
  try {
    parsed(text);
  } catch (e) {
    if (e instanceof BootkeyError || e instanceof SyntaxError) throw new ServerError('BAD_RUNTIME_POLICY', `runtime policy: ${e.message}`);
    throw e;
  }
}

/** Every failing entry of `trusted` under the policy `text` (stored, so valid). */
export function checkRuntime(text: string, trusted: TrustedImaEntries): { failures: RuntimeFailure[] } {
  const r = checkRuntimePolicy(parsed(text), trusted);
  return { failures: r.ok ? [] : r.failures.map((f) => ({ index: f.index, path: f.path, code: f.code, message: f.message })) };
}
