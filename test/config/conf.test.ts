import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseConf, ConfigError } from '../../src/config/conf.ts';
import { UsageError } from '../../src/errors.ts';
import { resolveServerConfig, SERVER_KEYS, exampleServerConf, envName } from '../../src/config/server-conf.ts';
import { loadMachineConf, exampleMachineConf } from '../../src/config/machine-conf.ts';
import { loadConfig } from '../../src/initrd/agent.ts';

const dir = mkdtempSync(join(tmpdir(), 'bootkey-conf-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
function throwsConfig(fn: () => unknown, key: string | undefined, line: number | undefined, msg: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.is((e as ConfigError).key, key);
    assert.is((e as ConfigError).line, line);
    assert.match((e as Error).message, msg);
    return;
  }
  assert.unreachable('expected a ConfigError');
}

test('parseConf: key = value, comments, quotes, values with # and =', () => {
  const m = parseConf('# c\n; c\n\nlisten = 0.0.0.0:7443\r\nstore=postgres://u:p#w=x@h/db\ncomment = "  x  "\n', 'f');
  assert.is(m.get('listen')!.value, '0.0.0.0:7443');
  assert.is(m.get('listen')!.line, 4);
  assert.is(m.get('store')!.value, 'postgres://u:p#w=x@h/db');
  assert.is(m.get('comment')!.value, '  x  ');
});

test('parseConf: malformed lines name the file and line', () => {
  throwsConfig(() => parseConf('a = 1\nnonsense\n', 'f.conf'), undefined, 2, /^f\.conf:2: expected "key = value"/);
  throwsConfig(() => parseConf('[server]\n', 'f.conf'), undefined, 1, /sections/);
  throwsConfig(() => parseConf('a = 1\n\na = 2\n', 'f.conf'), 'a', 3, /already set on line 1/);
  throwsConfig(() => parseConf('Listen = x\n', 'f.conf'), 'Listen', 1, /not a key/);
  throwsConfig(() => parseConf('a = "x\n', 'f.conf'), 'a', 1, /unterminated/);
  throwsConfig(() => parseConf('x'.repeat(70000), 'f.conf'), undefined, undefined, /larger than/);
});

test('server.conf: every key of the example parses; values are checked per key, naming key and line', () => {
  assert.ok(exampleServerConf().includes('#rate-limit-machine = '));
  const p = file('s1.conf', 'state = /var/lib/bootkey\nlisten = 127.0.0.1:7443\nmax-connections = 0\n');
  throwsConfig(() => resolveServerConfig({ configFile: p, env: {} }), 'max-connections', 3, /s1\.conf:3: key "max-connections": expected an integer in 1\.\.100000/);
  const w = file('s2.conf', 'webhook = https://x\n');
  throwsConfig(() => resolveServerConfig({ configFile: w, env: {} }), 'webhook', 1, /unknown key "webhook": the webhook keys are webhook-url/);
  const wc = file('s2b.conf', 'webhook-url = https://user:pw@x/hook\n');
  throwsConfig(() => resolveServerConfig({ configFile: wc, env: {} }), 'webhook-url', 1, /must not carry credentials/);
  const wr = file('s2c.conf', 'runtime-hook = relative/hook\n');
  throwsConfig(() => resolveServerConfig({ configFile: wr, env: {} }), 'runtime-hook', 1, /absolute path/);
  const l = file('s3.conf', '\n\nlisten = 127.0.0.1\n');
  throwsConfig(() => resolveServerConfig({ configFile: l, env: {} }), 'listen', 3, /expected HOST:PORT/);
  const all = file('s4.conf', ['state = /s', 'listen = [::1]:7443', 'store = sqlite', 'released-pcr = 15', 'ek-ca = /e.pem', 'nonce-ttl = 60', 'max-connections = 10',
    'listen-backlog = 64', 'rate-limit-peer = 60/5', 'rate-limit-machine = 20/0.5', 'message-timeout = 10', 'connection-timeout = 30', 'metrics = 127.0.0.1:9464', 'dashboard = off',
    'webhook-url = https://alerts.example.com/bootkey', 'webhook-secret-file = /etc/bootkey/webhook.key', 'webhook-attempts = 5', 'runtime-hook = /usr/local/sbin/hook'].join('\n'));
  const r = resolveServerConfig({ configFile: all, env: {} });
  assert.equal(Object.keys(r.settings).sort(), Object.keys(SERVER_KEYS).sort(), 'every server flag has a key');
  assert.equal(r.settings['rate-limit-machine'], { burst: 20, perSecond: 0.5 });
  assert.is(r.settings.dashboard, null);
  assert.is(r.origins['metrics']?.line, 13);
});

test('server.conf: precedence default < file < environment < flag', () => {
  const p = file('p.conf', 'listen = 127.0.0.1:1000\nnonce-ttl = 30\nmax-connections = 5\n');
  const r = resolveServerConfig({ configFile: p, env: { BOOTKEY_NONCE_TTL: '40', BOOTKEY_MAX_CONNECTIONS: '6' }, flags: { 'max-connections': '7' } });
  assert.is(r.settings.listen, '127.0.0.1:1000');
  assert.is(r.origins.listen?.from, 'file');
  assert.is(r.settings['nonce-ttl'], 40);
  assert.is(r.origins['nonce-ttl']?.from, 'env');
  assert.is(r.settings['max-connections'], 7);
  assert.is(r.origins['max-connections']?.from, 'flag');
  assert.is(r.settings['listen-backlog'], undefined, 'unset: the server default applies');
  assert.is(envName('rate-limit-peer'), 'BOOTKEY_RATE_LIMIT_PEER');
  throwsConfig(() => resolveServerConfig({ configFile: p, env: { BOOTKEY_NONCE_TTL: '2' } }), 'nonce-ttl', undefined, /^BOOTKEY_NONCE_TTL: expected an integer in 5\.\.3600/);
  assert.throws(() => resolveServerConfig({ configFile: p, env: {}, flags: { listen: 'x' } }), (e: Error) => e instanceof UsageError && /^--listen:/.test(e.message));
  // BOOTKEY_CONFIG names the file; a missing explicit file is an error, a missing default file is not.
  assert.is(resolveServerConfig({ env: { BOOTKEY_CONFIG: p } }).settings.listen, '127.0.0.1:1000');
  throwsConfig(() => resolveServerConfig({ configFile: join(dir, 'absent.conf'), env: {} }), undefined, undefined, /cannot read the configuration file .*ENOENT/);
  assert.equal(resolveServerConfig({ env: {}, defaultFile: join(dir, 'absent.conf') }).settings, {});
});

const cli = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, BOOTKEY_CONFIG: '', ...env } });

test('bootkey server --check-config names the offending key and line; prints origins when valid', () => {
  const bad = file('bad.conf', 'state = /tmp\n# ok\nrate-limit-peer = 60/x\n');
  const r = cli(['server', '--check-config', '--config', bad]);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /bad\.conf:3: key "rate-limit-peer": expected BURST\/PER_SECOND/);
  const good = file('good.conf', 'state = /tmp\nlisten = 127.0.0.1:7443\nstore = postgres://u:secret@db/bootkey\n');
  const g = cli(['server', '--check-config', '--config', good, '--listen', '127.0.0.1:9999'], { BOOTKEY_NONCE_TTL: '90' });
  assert.is(g.status, 0, g.stderr);
  assert.match(g.stdout, /listen = 127\.0\.0\.1:9999 +\(--listen\)/);
  assert.match(g.stdout, /nonce-ttl = 90 +\(BOOTKEY_NONCE_TTL\)/);
  assert.match(g.stdout, /store = postgres:\/\/u:\*\*\*@db\/bootkey +\(.*good\.conf:3\)/);
  assert.not.match(g.stdout, /secret/, 'the store password is not printed');
  const rp = file('rp.conf', 'released-pcr = 7\n');
  const x = cli(['server', '--check-config', '--config', rp]);
  assert.is(x.status, 1);
  assert.match(x.stderr, /rp\.conf:1: key "released-pcr":/);
});

test('bootkey.conf: strict check names key and line; the initrd agent reads it leniently (same keys)', () => {
  assert.throws(() => loadMachineConf('deadline = 30\nservers = https://a:7443, ftp://b\n', 'm.conf', true), /m\.conf:2: key "servers": "ftp:\/\/b" is not https/);
  const ok = loadMachineConf('deadline = 30\nservers = https://a:7443, https://[::1]:7443\nca = /etc/bootkey/ca.pem\nenabled = yes\n', 'm.conf', true).settings;
  assert.equal(ok.servers, ['https://a:7443', 'https://[::1]:7443']);
  const len = loadMachineConf('deadline = 99999\ntpm = swtpm:host=h,port=1\nbogus\n', 'm.conf', false);
  assert.is(len.settings.deadline, undefined);
  assert.is(len.settings.tpm, 'swtpm:host=h,port=1');
  assert.is(len.skipped.length, 2);
  const c = loadConfig('deadline = 30\nenabled = no\n', 'rd.bootkey.deadline=12');
  assert.is(c.deadlineS, 12, 'the kernel command line overrides the file');
  assert.is(c.disabled, true);
  const m = file('m.conf', 'deadline = 0\n');
  const r = cli(['config', 'check', '--machine', '--config', m]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /m\.conf:1: key "deadline": expected a number/);
});

test('the example files (bootkey config example): every key, and each uncommented example is valid', () => {
  const srv = exampleServerConf();
  for (const k of Object.keys(SERVER_KEYS)) assert.match(srv, new RegExp(`^#${k} = \\S`, 'm'));
  const on = file('ex-server.conf', srv.replace(/^#([a-z-]+ = )/gm, '$1'));
  assert.equal(Object.keys(resolveServerConfig({ configFile: on, env: {} }).settings).sort(), Object.keys(SERVER_KEYS).sort());
  const m = exampleMachineConf().replace(/^#([a-z-]+ = )/gm, '$1');
  assert.equal(Object.keys(loadMachineConf(m, 'ex', true).settings).sort(), ['ca', 'deadline', 'enabled', 'eventlog', 'servers', 'tpm']);
  const r = cli(['config', 'example', '--server']);
  assert.is(r.stdout, srv);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
