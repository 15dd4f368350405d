/**
 * Machine-side staging end to end (issue 11 §3): a real server on a free port, a swtpm "booted"
 * into our OVMF Secure Boot UKI log (uki-sb-on: the UKI sbsigned with OVMF's snakeoil key), a
 * LUKS2 image, the real client (src/client/stage.ts) and `bootkey stage`:
 *  - the round trip: stage a new snakeoil-signed UKI (same command line, another os-release) under
 *    staging mode signed-by; the "reboot" (the predicted log replayed into a fresh swtpm) unlocks;
 *    the same reboot without staging is refused (POLICY); timed for the closing note;
 *  - each refusal with its code: STAGING_NOT_ALLOWED (default policy), UNSIGNED, UNLISTED_SIGNER
 *    (another key), DIGEST_NOT_COVERED (another image's signature), STAGE_WIDENS (another command
 *    line: the failures name it), NONCE (the request changed after the quote), POLICY (the running
 *    boot fails its policy: it may not stage), and the CLI printing the reason;
 *  - admin staged list / approve / drop with staging.requireApproval; an enrolment token cannot approve;
 *  - retire: a staged boot unused for `keep` successful releases after its first use is retired,
 *    and its boot is refused again.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, refused, admin, cli, shutdown, openTpm, log, ROOT, type TestServer, type Machine } from './helpers.ts';
import { replayLogIntoTpm } from '../../scripts/replay-log.ts';
import { stageWithServer } from '../../src/client/stage.ts';
import { readToken } from '../../src/initrd/unlock.ts';
import { predictBoot } from '../../src/efi/predict.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { predictedLogBytes, type PredictedBoot } from '../../src/measuredboot/stage.ts';
import { withServer } from '../../src/client/connect.ts';
import { testUkis, efiBinaries, CMDLINE1 } from '../efi/helpers.ts';

const tmp = tempDir('stage');
const SNAKEOIL = '/usr/share/ovmf/PkKek-1-snakeoil.pem';
let srv: TestServer;
let files: { uki3: string; uki3Snakeoil: string; uki3Other: string; uki2Snakeoil: string; uki1Signed: string } | undefined;
let skip: string | undefined;

/** New UKIs from the cached parts (test/efi/helpers.ts testUkis): uki3 = uki1 with another os-release. */
function buildUkis(): typeof files {
  const u = testUkis();
  const b = efiBinaries();
  if ('skip' in u || 'skip' in b) {
    skip = 'skip' in u ? u.skip : (b as { skip: string }).skip;
    return undefined;
  }
  const d = tmp.dir;
  const out = { uki3: `${d}/uki3.efi`, uki3Snakeoil: `${d}/uki3.snakeoil.efi`, uki3Other: `${d}/uki3.other.efi`, uki2Snakeoil: `${d}/uki2.snakeoil.efi`, uki1Signed: u.signed };
  const script = `set -e
. qemu-tests/lib.sh
BK_STUB=$1
printf 'NAME="bootkey test"\\nID=bootkey-test\\nVERSION_ID=3\\nPRETTY_NAME="bootkey staged update"\\n' >"$2/os-release3"
bk_build_uki "$2/uki3.efi" "$3" "$4" "$5" "$2/os-release3"
bk_sign "$2/uki3.snakeoil.efi" "$2/uki3.efi"
bk_sign "$2/uki2.snakeoil.efi" "$6"
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=bootkey other signer" -days 30 -keyout "$2/other.key" -out "$2/other.pem" 2>/dev/null
sbsign --key "$2/other.key" --cert "$2/other.pem" --output "$2/uki3.other.efi" "$2/uki3.efi" 2>/dev/null`;
  const r = spawnSync('bash', ['-c', script, 'build', b.files.stub, d, b.files.kernel, u.initrd, CMDLINE1, u.uki2], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`building the staging UKIs failed: ${r.stderr}`);
  return out;
}

const snakeoilSha = (): string => createHash('sha256').update(new X509Certificate(readFileSync(SNAKEOIL)).raw).digest('hex');

function predict(current: Buffer, uki: string): PredictedBoot {
  return predictBoot(parseEventLog(current), { uki: readFileSync(uki) });
}

/** A reboot into `logBytes`: TPM2_Shutdown, a fresh swtpm process on the same state, the log replayed. */
async function rebootInto(m: Machine, logBytes: Buffer): Promise<void> {
  await shutdown(m.tpm);
  await m.tpm.close();
  await m.sw.restart();
  m.tpm = await openTpm(m.sw);
  m.eventLog = logBytes;
  await replayLogIntoTpm(m.tpm, logBytes);
}

async function stage(m: Machine, image: string, p: PredictedBoot | string, extra: { label?: string; tamper?: Parameters<typeof stageWithServer>[0]['tamper'] } = {}) {
  const { token } = await readToken(image);
  return stageWithServer({ tpm: m.tpm, token, eventLog: m.eventLog, prediction: typeof p === 'string' ? p : JSON.stringify(p), deadlineMs: 20_000, ...extra });
}

async function setStaging(machineId: string, staging: unknown): Promise<void> {
  const shown = (await admin(srv, 'show', machineId)) as { policy: Record<string, unknown> };
  await admin(srv, 'set-policy', machineId, { policy: JSON.stringify({ ...shown.policy, staging }) });
}

test.before(async () => {
  files = buildUkis();
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  await srv?.close();
  tmp.cleanup();
});

test('staging round trip under signed-by: the staged snakeoil-signed UKI unlocks at the next boot; refusals named; CLI', async () => {
  if (!files) return void console.log(`  SKIP: ${skip}`);
  const m = await machine();
  const img = await luksImage(tmp.dir, 'rt.img');
  try {
    const r = await enrollMachine(srv, m, img);
    await unlockImage(m, img.image);
    const base = m.eventLog;
    const next = predict(base, files.uki3Snakeoil);
    const nextLog = predictedLogBytes(next);

    // Default policy: staging mode none.
    await refused(stage(m, img.image, next), 'STAGING_NOT_ALLOWED');
    await setStaging(r.machine, { mode: 'signed-by', signedBy: [{ sha256: snakeoilSha(), subject: 'SnakeOil' }] });

    // Unsigned, another key, another image's signature, another command line, a changed request.
    const e1 = await refused(stage(m, img.image, predict(base, files.uki3)), 'UNSIGNED');
    assert.match(e1.message, /comes without an Authenticode signature/);
    const e2 = await refused(stage(m, img.image, predict(base, files.uki3Other)), 'UNLISTED_SIGNER');
    assert.match(e2.message, /signed by CN=bootkey other signer, which does not chain/);
    const stolen = structuredClone(next);
    stolen.images[0].pkcs7 = predict(base, files.uki1Signed).images.length ? [readPkcs7(files.uki1Signed)] : [];
    await refused(stage(m, img.image, stolen), 'DIGEST_NOT_COVERED');
    const e4 = await refused(stage(m, img.image, predict(base, files.uki2Snakeoil)), 'STAGE_WIDENS');
    // (Secure Boot on: the stub's LoadOptions are logged as a digest, not text.)
    assert.ok(e4.failures?.some((f) => /^kernel-cmdline: linux-efi-stub digest [0-9a-f]{64}$/.test(f)), JSON.stringify(e4.failures));
    assert.match(e4.message, /may only add signed PCR 4 images; this boot would also allow kernel-cmdline/);
    await refused(stage(m, img.image, next, { label: 'a', tamper: (f) => ({ ...f, label: 'b' }) }), 'NONCE');
    // A replayed stage-finish (same random, same quote): the nonce was consumed by the first.
    let first: Parameters<NonNullable<Parameters<typeof stageWithServer>[0]['tamper']>>[0] | undefined;
    await refused(stage(m, img.image, predict(base, files.uki3), { tamper: (f) => (first = f) }), 'UNSIGNED');
    await refused(withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000 }, (s) => s.request(first!, ['staged'])), 'NONCE_USED');

    // Before staging, the new boot is refused (as today).
    await rebootInto(m, nextLog);
    await refused(unlockImage(m, img.image), 'POLICY');
    // From that failing boot the machine may not stage either.
    await refused(stage(m, img.image, predict(nextLog, files.uki3Snakeoil)), 'POLICY');
    await rebootInto(m, base);
    await unlockImage(m, img.image);

    // The round trip, timed.
    const t0 = process.hrtime.bigint();
    const s = await stage(m, img.image, next, { label: 'uki3' });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`  staging round trip (swtpm, loopback TLS, quote + verification + policy widening): ${ms.toFixed(0)} ms`);
    assert.is(s.staged.state, 'active');
    assert.match(s.staged.id, /^s-[0-9a-f]{16}$/);
    assert.equal(s.staged.widenings.length, 1);
    assert.match(s.staged.widenings[0], /^boot-chain stage \d+ \((uki|application)\): [0-9a-f]{64}$/, s.staged.widenings[0]);
    assert.match(s.staged.signers[0], /signed by .*SnakeOil|signed by .*Snake/i);
    // Staging it again: already allowed, nothing new.
    assert.is((await stage(m, img.image, next)).staged.state, 'already-allowed');

    await rebootInto(m, nextLog);
    const u = await unlockImage(m, img.image);
    assert.is(u.machine, r.machine);
    const list = (await admin(srv, 'staged-list', r.machine)) as { id: string; state: string; used: boolean }[];
    assert.equal(list.map((x) => [x.id, x.state, x.used]), [[s.staged.id, 'active', true]]);
    const audit = (await admin(srv, 'audit', r.machine)) as { action: string; result: string; code?: string; reasons?: string[] }[];
    assert.ok(audit.some((a) => a.action === 'stage' && a.result === 'ok' && a.reasons?.some((x) => x.includes(s.staged.id))));
    assert.ok(audit.some((a) => a.action === 'stage-finish' && a.code === 'UNLISTED_SIGNER'));

    // The CLI prints the reason of a refusal (exit 1).
    await m.detach();
    try {
      // (uki3 signed by the other key has uki3's Authenticode digest, staged now: already allowed.)
      const ok = await cli(['stage', '--device', img.image, '--uki', files.uki3Other, '--eventlog', writeTmp('cur.bin', m.eventLog), '--tpm', m.sw.tcti]);
      assert.is(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /this boot is already allowed/);
      const c = await cli(['stage', '--device', img.image, '--uki', files.uki2Snakeoil, '--eventlog', writeTmp('cur.bin', m.eventLog), '--tpm', m.sw.tcti]);
      assert.is(c.code, 1, c.stderr);
      assert.match(c.stderr, /bootkey: staging refused by https:\/\/127\.0\.0\.1:\d+: STAGE_WIDENS: under staging mode signed-by a machine may only add signed PCR 4 images/);
      assert.match(c.stderr, /\n  - kernel-cmdline: linux-efi-stub digest [0-9a-f]{64}\n/);
    } finally {
      await m.attach();
    }
  } finally {
    await m.stop();
  }
});

test('requireApproval: pending until `admin staged approve` (an enrolment token cannot); drop; retire after keep unused releases', async () => {
  if (!files) return void console.log(`  SKIP: ${skip}`);
  const m = await machine();
  const img = await luksImage(tmp.dir, 'ap.img');
  try {
    const r = await enrollMachine(srv, m, img);
    await unlockImage(m, img.image);
    const base = m.eventLog;
    const next = predict(base, files.uki3Snakeoil);
    const nextLog = predictedLogBytes(next);
    await setStaging(r.machine, { mode: 'signed-by', signedBy: [{ sha256: snakeoilSha() }], requireApproval: true, keep: 2 });
    const s = await stage(m, img.image, next, { label: 'needs approval' });
    assert.is(s.staged.state, 'pending');
    await rebootInto(m, nextLog);
    await refused(unlockImage(m, img.image), 'POLICY');

    // An enrolment token cannot approve; a malformed id is refused; the admin token approves.
    const asEnrol = withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000 }, (c) => c.request({ t: 'admin', adminToken: srv.enrolToken, op: 'staged-approve', staged: s.staged.id }, ['admin-result']));
    await refused(asEnrol, 'TOKEN_SCOPE');
    await refused(withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000 }, (c) => c.request({ t: 'admin', adminToken: srv.adminToken, op: 'staged-approve', staged: 's-0000000000000000' }, ['admin-result'])), 'UNKNOWN_STAGED');
    const ap = (await withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000 }, (c) => c.request({ t: 'admin', adminToken: srv.adminToken, op: 'staged-approve', staged: s.staged.id }, ['admin-result'])));
    assert.equal(JSON.parse(ap.json), { staged: s.staged.id, machine: r.machine, state: 'active' });
    await rebootInto(m, nextLog);
    await unlockImage(m, img.image);

    // Retire: after the staged boot's first release, keep = 2 releases of another boot retire it.
    await rebootInto(m, base);
    await unlockImage(m, img.image);
    let list = (await admin(srv, 'staged-list', r.machine)) as { state: string; unusedReleases: number }[];
    assert.equal(list.map((x) => [x.state, x.unusedReleases]), [['active', 1]]);
    await rebootInto(m, base);
    await unlockImage(m, img.image);
    list = (await admin(srv, 'staged-list', r.machine)) as { state: string; unusedReleases: number }[];
    assert.equal(list.map((x) => x.state), ['retired']);
    const audit = (await admin(srv, 'audit', r.machine)) as { action: string; who: string }[];
    assert.ok(audit.some((a) => a.action === 'staged-retired' && a.who === 'server'));
    await rebootInto(m, nextLog);
    await refused(unlockImage(m, img.image), 'POLICY');

    // Stage again, approve, drop: refused again.
    await rebootInto(m, base);
    await unlockImage(m, img.image);
    const s2 = await stage(m, img.image, next);
    const req = (op: string) => withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000 }, (c) => c.request({ t: 'admin', adminToken: srv.adminToken, op, staged: s2.staged.id }, ['admin-result']));
    await req('staged-approve');
    assert.equal(JSON.parse((await req('staged-drop')).json), { staged: s2.staged.id, machine: r.machine, state: 'dropped', was: 'active' });
    await refused(req('staged-drop'), 'BAD_REQUEST');
    await rebootInto(m, nextLog);
    await refused(unlockImage(m, img.image), 'POLICY');
  } finally {
    await m.stop();
  }
});

test('staging mode any: another command line is accepted (a UKI signed by nobody the policy lists)', async () => {
  if (!files) return void console.log(`  SKIP: ${skip}`);
  const m = await machine();
  const img = await luksImage(tmp.dir, 'any.img');
  try {
    const r = await enrollMachine(srv, m, img);
    await unlockImage(m, img.image);
    await setStaging(r.machine, { mode: 'any' });
    const next = predict(m.eventLog, files.uki2Snakeoil);
    const s = await stage(m, img.image, next);
    assert.is(s.staged.state, 'active');
    assert.ok(s.staged.widenings.some((w) => w.startsWith('kernel-cmdline')), JSON.stringify(s.staged.widenings));
    await rebootInto(m, predictedLogBytes(next));
    await unlockImage(m, img.image);
  } finally {
    await m.stop();
  }
});

function readPkcs7(file: string): string {
  return predict(log('uki-sb-on'), file).images[0].pkcs7![0];
}

function writeTmp(name: string, b: Buffer): string {
  const p = join(tmp.dir, name);
  writeFileSync(p, b);
  return p;
}

void existsSync;
test.run();
