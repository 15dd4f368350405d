/**
 * The initrd agent's pure parts (src/initrd/agent.ts): ask-file parsing, expiry, configuration
 * precedence, the pinned-CA check, and the loop stepping aside when no question is for a bootkey
 * volume. The whole boot with systemd-cryptsetup is qemu-tests/run-tests.sh (npm run test:qemu).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAsk, listAsks, loadConfig, checkPinnedCa, runAgent } from '../../src/initrd/agent.ts';
import type { BootkeyToken } from '../../src/client/token.ts';

const dir = mkdtempSync(join(tmpdir(), 'bootkey-agent-'));

const ASK = `[Ask]
PID=412
Socket=/run/systemd/ask-password/sck.5b1c
AcceptCached=1
Echo=0
NotAfter=0
Id=cryptsetup:/dev/disk/by-uuid/12243d2a-897e-43c4-acd2-2db7b0fc31b1
Message=Please enter passphrase for disk luks-12243d2a: 
`;

test('parseAsk: socket, id, device, NotAfter', () => {
  const a = parseAsk('/x/ask.1', ASK)!;
  assert.is(a.socket, '/run/systemd/ask-password/sck.5b1c');
  assert.is(a.device, '/dev/disk/by-uuid/12243d2a-897e-43c4-acd2-2db7b0fc31b1');
  assert.is(a.notAfter, 0n);
  assert.is(parseAsk('/x/ask.2', ASK.replace(/^Id=.*$/m, 'Id=vconsole:tty1'))!.device, undefined);
  assert.is(parseAsk('/x/ask.3', ASK.replace(/^Socket=.*$/m, '')), undefined);
  assert.is(parseAsk('/x/ask.4', '[Other]\nSocket=/s\n'), undefined);
});

test('listAsks: only ask.* files, expired ones skipped', () => {
  const d = mkdtempSync(join(dir, 'asks-'));
  writeFileSync(join(d, 'ask.live'), ASK);
  writeFileSync(join(d, 'ask.expired'), ASK.replace('NotAfter=0', 'NotAfter=1'));
  const future = process.hrtime.bigint() / 1000n + 60_000_000n;
  writeFileSync(join(d, 'ask.future'), ASK.replace('NotAfter=0', `NotAfter=${future}`));
  writeFileSync(join(d, 'sck.5b1c'), '');
  assert.equal(listAsks(d).map((a) => a.file.split('/').pop()), ['ask.future', 'ask.live']);
  assert.equal(listAsks(join(d, 'missing')), []);
});

test('loadConfig: defaults < config file < kernel command line', () => {
  assert.equal(loadConfig('', ''), { deadlineS: 60, eventlog: '/sys/kernel/security/tpm0/binary_bios_measurements', disabled: false });
  const c = loadConfig('# comment\ndeadline = 30\ntpm=swtpm:host=h,port=1\n', 'quiet rd.bootkey.deadline=12 root=/dev/x');
  assert.is(c.deadlineS, 12);
  assert.is(c.tpm, 'swtpm:host=h,port=1');
  assert.is(loadConfig('deadline=30', 'rd.bootkey.deadline=abc').deadlineS, 30, 'a bad value is ignored');
  assert.is(loadConfig('deadline=99999', '').deadlineS, 60, 'out of range is ignored');
  assert.ok(loadConfig('', 'rd.bootkey=0').disabled);
  assert.ok(loadConfig('enabled=no', '').disabled);
});

function selfSigned(name: string): string {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', crt, '-subj', `/CN=${name}`, '-days', '2'], { stdio: 'ignore' });
  return readFileSync(crt, 'utf8');
}

test('checkPinnedCa: the token CA must be one of the pinned CAs', () => {
  const a = selfSigned('ca-a');
  const b = selfSigned('ca-b');
  const token = { ca: a } as BootkeyToken;
  checkPinnedCa(token, undefined);
  checkPinnedCa(token, a);
  checkPinnedCa(token, b + a);
  try {
    checkPinnedCa(token, b);
    assert.unreachable();
  } catch (e) {
    assert.is((e as { code?: string }).code, 'CA_MISMATCH');
  }
});

test('runAgent: questions for volumes without a bootkey token are left to the prompt', async () => {
  const d = mkdtempSync(join(dir, 'run-'));
  const plain = join(dir, 'plain.img');
  writeFileSync(plain, Buffer.alloc(1 << 20));
  writeFileSync(join(d, 'ask.1'), ASK.replace(/^Id=.*$/m, `Id=cryptsetup:${plain}`));
  writeFileSync(join(d, 'ask.2'), ASK.replace(/^Id=.*$/m, 'Id=vconsole:tty1'));
  const lines: string[] = [];
  const t0 = Date.now();
  const n = await runAgent({ dir: d, log: (l) => lines.push(l), config: { deadlineS: 5, eventlog: '/nonexistent', disabled: false } });
  assert.is(n, 0);
  assert.equal(lines, []);
  assert.ok(Date.now() - t0 < 5000, 'returns at once');
  const off: string[] = [];
  assert.is(await runAgent({ dir: d, log: (l) => off.push(l), config: { deadlineS: 5, eventlog: '', disabled: true } }), 0);
  assert.match(off.join('\n'), /disabled/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
