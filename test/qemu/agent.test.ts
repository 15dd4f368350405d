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
import { parseAsk, listAsks, loadConfig, checkPinnedCa, runAgent, hasRoute, waitForRoute } from '../../src/initrd/agent.ts';
import fc from 'fast-check';
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

// /proc/net/route and /proc/net/ipv6_route as a QEMU user-net guest has them after DHCP
const R4_HEAD = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n';
const R4_DHCP = R4_HEAD + 'eth0\t00000000\t0202000A\t0003\t0\t0\t1024\t00000000\t0\t0\t0\neth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n';
const R4_LINK = R4_HEAD + 'eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n';
const R4_DOWN = R4_HEAD + 'eth0\t00000000\t0202000A\t0002\t0\t0\t1024\t00000000\t0\t0\t0\n'; // no RTF_UP
const R6_LO = '00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001       lo\n';
const R6_LL = 'fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n';
const R6_DEF = '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n';
const R6_REJECT = '00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n';

test('hasRoute: a route covering the server, or a default route for a host name; lo, down and link-local routes do not count', () => {
  assert.ok(hasRoute('10.0.2.2', R4_DHCP, ''), 'default route');
  assert.ok(hasRoute('10.0.2.2', R4_LINK, ''), 'on-link subnet');
  assert.not.ok(hasRoute('192.0.2.10', R4_LINK, ''), 'another subnet without a default route');
  assert.not.ok(hasRoute('10.0.2.2', R4_HEAD, R6_LO), 'no route yet');
  assert.not.ok(hasRoute('10.0.2.2', R4_DOWN, ''), 'route not up');
  assert.ok(hasRoute('keys.example.org', R4_DHCP, ''), 'host name: a default route');
  assert.not.ok(hasRoute('keys.example.org', R4_LINK, R6_LO + R6_LL + R6_REJECT), 'host name: no default route');
  assert.ok(hasRoute('keys.example.org', R4_HEAD, R6_DEF), 'host name: IPv6 default route');
  assert.ok(hasRoute('2001:db8::10', R4_DHCP, R6_DEF), 'IPv6 literal via the default route');
  assert.not.ok(hasRoute('2001:db8::10', R4_DHCP, R6_LL), 'IPv6 literal: link-local only');
  assert.ok(hasRoute('fe80::1', '', R6_DEF), 'IPv6 via default');
});

test('hasRoute: never throws on garbage tables (fuzz)', () => {
  fc.assert(fc.property(fc.string(), fc.string(), fc.constantFrom('10.0.2.2', '2001:db8::1', 'h.example', ''), (a, b, h) => {
    assert.type(hasRoute(h, a, b), 'boolean');
  }));
});

test('waitForRoute: returns once a route appears, and at the deadline without one', async () => {
  let calls = 0;
  const waited = await waitForRoute(['https://10.0.2.2:7443'], Date.now() + 5000, (f) => (f.endsWith('/route') && ++calls >= 3 ? R4_DHCP : R4_HEAD));
  assert.ok(calls >= 3 && waited >= 90 && waited < 2000, `waited ${waited} ms over ${calls} reads`);
  const t0 = Date.now();
  await waitForRoute(['https://10.0.2.2:7443'], Date.now() + 200, () => R4_HEAD);
  assert.ok(Date.now() - t0 >= 190 && Date.now() - t0 < 1500, 'gives up at the deadline');
  assert.ok((await waitForRoute(['https://127.0.0.1:7443'], Date.now() + 5000, () => '')) < 50, 'local server: no wait');
});

test('runAgent --wait-first: waits for the first bootkey question until the deadline', async () => {
  const d = join(dir, 'not-yet'); // the directory does not exist yet (the .path unit makes it)
  const t0 = Date.now();
  assert.is(await runAgent({ dir: d, log: () => undefined, waitFirst: true, config: { deadlineS: 0.6, eventlog: '/nonexistent', disabled: false } }), 0);
  assert.ok(Date.now() - t0 >= 550, `waited ${Date.now() - t0} ms`);
  const t1 = Date.now();
  assert.is(await runAgent({ dir: d, log: () => undefined, config: { deadlineS: 5, eventlog: '/nonexistent', disabled: false } }), 0);
  assert.ok(Date.now() - t1 < 400, 'without --wait-first it leaves at once');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
