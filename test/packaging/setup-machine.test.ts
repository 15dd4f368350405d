/**
 * `bootkey setup machine` for real (the CLI in a child process): enrolment against a test server
 * with an enrolment token, a swtpm booted into our OVMF log and a LUKS2 image; the dracut
 * configuration written under --root; the initrd regeneration printed, not run (--root). Then
 * the enrolled image unlocks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, testServer, luksImage, machine, unlockImage, metadata, cli, newEnrolToken, type TestServer } from '../e2e/helpers.ts';
import { findTokens } from '../../src/client/token.ts';
import { DRACUT_CONF_MARKER } from '../../src/cli/setup.ts';

const tmp = tempDir('setup-machine');
let srv: TestServer;

test.before(async () => {
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  await srv?.close();
  tmp.cleanup();
});

test('setup machine --root: enrols with a one-use enrolment token, writes 90-bootkey.conf, prints the initrd step; the image then unlocks', async () => {
  const m = await machine();
  const img = await luksImage(tmp.dir, 'setup.img');
  const root = join(tmp.dir, 'root');
  const ca = join(tmp.dir, 'ca.pem');
  const tok = join(tmp.dir, 'enrol.token');
  const log = join(tmp.dir, 'eventlog.bin');
  writeFileSync(ca, srv.ca);
  writeFileSync(tok, await newEnrolToken(srv, 1));
  writeFileSync(log, m.eventLog);
  try {
    await m.detach(); // swtpm serves one client: the CLI's
    const args = ['setup', 'machine', '--root', root, '--server', srv.url, '--ca', ca, '--enrol-token', tok, '--device', img.image, '--key-file', img.pass,
      '--tpm', m.sw.tcti, '--eventlog', log, '--machine-id', `setup-${process.pid}`];
    const r = await cli(args, { timeoutMs: 120_000 });
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /setup: 1\/3 bootkey enroll --server https:\/\/127\.0\.0\.1:\d+ --device /);
    assert.match(r.stdout, /enrolled .*setup\.img: machine \S+, keyslot \d+/);
    assert.match(r.stdout, /setup: 3\/3 skipped under --root .* \(run it in the target\): dracut --force --regenerate-all/);
    const conf = readFileSync(join(root, 'etc/dracut.conf.d/90-bootkey.conf'), 'utf8');
    assert.ok(conf.startsWith(DRACUT_CONF_MARKER), 'the marker the packages\' removal scriptlets look for');
    assert.match(conf, /^add_dracutmodules\+=" bootkey "$/m);
    const [t] = findTokens(await metadata(img.image));
    assert.equal(t.token.servers, [srv.url]);

    // the token was one-use: running setup again is refused by the server, and nothing is added
    const again = await cli(args, { timeoutMs: 120_000 });
    assert.is(again.code, 1);
    assert.match(again.stderr, /token/i);
    assert.is(findTokens(await metadata(img.image)).length, 1);

    await m.attach();
    const u = await unlockImage(m, img.image);
    assert.is(u.machine, t.token.machine);
  } finally {
    await m.stop();
  }
  assert.ok(existsSync(root));
});

test.run();
