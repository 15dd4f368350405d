/**
 * Positive end to end: real server, swtpm booted "into" our OVMF Secure Boot log, LUKS2 image:
 * enroll then unlock --test, for an RSA EK and an ECC EK (and RSA AK); the token's contents;
 * the CLI's exit codes (0 unlocked, 1 refused, 3 unreachable).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, refused, metadata, cli, type TestServer } from './helpers.ts';
import { readPCRs } from '../../src/tpm/commands/pcr.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import { testKey } from '../../src/luks/cryptsetup.ts';
import { findTokens } from '../../src/client/token.ts';

const tmp = tempDir('unlock');
let srv: TestServer;

test.before(async () => {
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  await srv?.close();
  tmp.cleanup();
});

for (const [ekAlg, akAlg] of [['rsa', 'ecc'], ['ecc', 'rsa']] as const) {
  test(`enroll then unlock --test: EK ${ekAlg}, AK ${akAlg}; second unlock this boot refused; after a reboot it works again`, async () => {
    const m = await machine();
    const img = await luksImage(tmp.dir, `${ekAlg}.img`);
    try {
      const before = await metadata(img.image);
      const r = await enrollMachine(srv, m, img, { ekAlg, akAlg });
      const md = await metadata(img.image);
      assert.equal(Object.keys(md.keyslots).sort(), [...Object.keys(before.keyslots), String(r.keyslot)].sort());
      const [t] = findTokens(md);
      assert.is(t.id, r.tokenId);
      assert.equal(t.token.keyslots, [String(r.keyslot)]);
      assert.equal(t.token.servers, [srv.url]);
      assert.is(t.token.machine, r.machine);
      assert.is(t.token.ek_alg, ekAlg);
      assert.is(t.token.ak_alg, akAlg);
      assert.is(t.token.released_pcr, 15);
      assert.is(t.token.ca, srv.ca);
      assert.is(Buffer.from(t.token.share, 'base64').length, 32);

      const u = await unlockImage(m, img.image);
      assert.is(u.machine, r.machine);
      // the released PCR was extended in every bank with H("bootkey released")
      const pcr = await readPCRs(m.tpm, [{ hash: TPM_ALG.SHA256, pcrs: [15] }]);
      const want = createHash('sha256').update(Buffer.alloc(32)).update(createHash('sha256').update('bootkey released').digest()).digest();
      assert.ok(pcr.get('sha256')!.get(15)!.equals(want));
      // the disk share alone (or a wrong key) does not open the image
      assert.not.ok(await testKey(img.image, Buffer.from(t.token.share)));

      await refused(unlockImage(m, img.image), 'ALREADY_RELEASED');
      await m.reboot();
      const u2 = await unlockImage(m, img.image);
      assert.is(u2.machine, r.machine);
    } finally {
      await m.stop();
    }
  });
}

test('CLI: bootkey unlock exit codes 0 (unlocked), 1 (refused, reason on stderr), 3 (no server)', async () => {
  const m = await machine();
  const img = await luksImage(tmp.dir, 'cli.img');
  try {
    await enrollMachine(srv, m, img);
    const logFile = `${tmp.dir}/boot.log`;
    (await import('node:fs')).writeFileSync(logFile, m.eventLog);
    await m.detach();
    const args = ['unlock', '--device', img.image, '--tpm', m.sw.tcti, '--eventlog', logFile, '--test'];
    const ok = await cli(args);
    assert.is(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^unlocked .*--test-passphrase/);
    const no = await cli(args);
    assert.is(no.code, 1, no.stderr);
    const lines = no.stderr.trim().split('\n');
    assert.match(lines[0], /^bootkey: refused by https:\/\/127\.0\.0\.1:\d+: ALREADY_RELEASED: /);
    await m.attach();
    await m.reboot();
    await m.detach();
    await srv.close();
    const gone = await cli(['unlock', '--device', img.image, '--tpm', m.sw.tcti, '--eventlog', logFile, '--test', '--deadline', '2']);
    assert.is(gone.code, 3, gone.stderr);
    assert.match(gone.stderr, /^bootkey: no key-release server reachable before the deadline/);
    const usage = await cli(['unlock', '--device', img.image]);
    assert.is(usage.code, 2);
    await m.attach();
  } finally {
    await m.stop();
    srv = await testServer(tmp.dir, { state: srv.state });
  }
});

test.run();
