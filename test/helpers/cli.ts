/**
 * Running the bootkey CLI from the sources in a test, and the one-error-line check every refusal
 * test makes (errors are one `bootkey:` line on stderr).
 * @module
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `bootkey ARGS` through the TypeScript loader, with optional stdin. */
export function runCli(args: string[], input?: Buffer | string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** stderr is exactly one `bootkey: …` line, matching `re`. */
export function oneErrorLine(stderr: string, re: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.is(lines.length, 1, stderr);
  assert.match(lines[0], /^bootkey: /);
  assert.match(lines[0], re);
}
