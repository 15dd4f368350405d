/**
 * One process of the cross-process store race (workers.test.ts): opens the SQLite store at
 * argv[2], prints "ready", waits for a line on stdin (both processes loaded), then races the
 * other process: consumes every nonce of argv[4] (a count; hashes are sha256("n"+i); p1 in
 * ascending order, p2 descending: they meet whatever the scheduler does), takes the enrolment token
 * t-00000000000000aa argv[5] times, appends argv[6] audit entries. Prints one JSON line.
 */
import { createHash } from 'node:crypto';
import { SqliteStore } from '../../src/server/store-sqlite.ts';

const [file, , nonces, takes, audits, who] = process.argv.slice(2);
const store = new SqliteStore(file);
await store.migrate();
process.stdout.write('ready\n');
await new Promise((r) => process.stdin.once('data', r));
process.stdin.pause();
const nonceOk: number[] = [];
const other: Record<string, number> = {};
let tokenOk = 0;
// Interleave the three kinds of writes, with a little CPU work between them as in a server
// (without it, one process takes the write lock back at once and the other sleeps in SQLite's
// busy handler until the first is done: no race to test).
const work = () => {
  const until = performance.now() + 0.2;
  while (performance.now() < until);
};
for (let i = 0; i < Math.max(Number(nonces), Number(takes), Number(audits)); i++) {
  if (i < Number(nonces)) {
    // p1 goes up, p2 down: they meet in the middle whatever the scheduler does
    const k = who === 'p2' ? Number(nonces) - 1 - i : i;
    const r = await store.consumeNonce(createHash('sha256').update(`n${k}`).digest(), 'm1', Date.now());
    if (r === 'ok') nonceOk.push(k);
    else other[r] = (other[r] ?? 0) + 1;
    work();
  }
  if (i < Number(takes) && (await store.useEnrolToken('t-00000000000000aa', Date.now())) === 'ok') tokenOk++;
  if (i < Number(audits)) await store.audit({ time: Date.now(), who: 'machine', machine: 'm1', action: 'release', result: 'ok', peer: who });
}
await store.close();
process.stdout.write(JSON.stringify({ nonceOk, tokenOk, other }) + '\n');
