/**
 * Man pages and bash completion generated from the CLI registry (scripts/gen-docs.ts), and
 * `bootkey setup server|machine` steps (--dry-run, --root). No TPM, no packages needed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { COMMANDS } from '../../src/cli/registry.ts';
import { bootkey8, bootkeyServer8, bootkeyConf5, serverConf5, bashCompletion, roff } from '../../scripts/gen-docs.ts';
import { loadConfig } from '../../src/initrd/agent.ts';
import { MACHINE_KEYS, loadMachineConf } from '../../src/config/machine-conf.ts';
import { SERVER_KEYS, resolveServerConfig } from '../../src/config/server-conf.ts';
import { initrdCommand, systemdEscapePath, agentUnit } from '../../src/cli/setup.ts';
import { cli } from '../e2e/helpers.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'bootkey-pkgdocs-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('bootkey(8) and bootkey-server(8) hold every command of the registry, each with its --help text', () => {
  const all = bootkey8() + bootkeyServer8();
  for (const c of COMMANDS) {
    assert.ok(all.includes(`.SS "bootkey ${c.path.join(' ')}"`), `no section for ${c.path.join(' ')}`);
    // the usage line of the help, roff-escaped
    assert.ok(all.includes(roff(c.help.split('\n')[0])), `no usage line for ${c.path.join(' ')}`);
  }
  assert.ok(bootkeyServer8().includes('.SS "bootkey setup server"'));
  assert.not.ok(bootkey8().includes('.SS "bootkey setup server"'));
  assert.ok(bootkey8().includes('.SS "bootkey setup machine"'));
  assert.match(bootkeyServer8(), /server\.conf\(5\)/);
});

test('roff escaping: a help line starting with . or \\ cannot become a roff request', () => {
  assert.is(roff('.TH x\n\'br\na\\b'), '\\&.TH x\n\\&\'br\na\\eb');
});

test('man pages render with man(1) without warnings', (ctx) => {
  try {
    execFileSync('sh', ['-c', 'command -v groff'], { stdio: 'ignore' });
  } catch {
    console.log('  skip: groff not installed (apt-get install groff-base)');
    return;
  }
  for (const [n, t] of [['bootkey.8', bootkey8()], ['bootkey-server.8', bootkeyServer8()], ['bootkey.conf.5', bootkeyConf5()], ['server.conf.5', serverConf5()]]) {
    const f = join(tmp, n);
    writeFileSync(f, t);
    const out = execFileSync('groff', ['-man', '-Tutf8', '-ww', '-z', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    assert.is(out.toString(), '', n);
  }
  void ctx;
});

test('bootkey.conf(5) and server.conf(5) list every key of the parsers, and each documented example parses', () => {
  for (const [k, v] of Object.entries(MACHINE_KEYS)) {
    assert.ok(bootkeyConf5().includes(`.B "${k} = ${roff(v.example)}"`), `bootkey.conf(5) lacks ${k}`);
    const { settings } = loadMachineConf(`${k} = ${v.example}`, 'example', true);
    assert.ok(Object.hasOwn(settings, k), `${k} = ${v.example} is not read`);
  }
  // the agent's own reading (lenient) of the keys it uses
  assert.is(loadConfig('deadline = 90', '').deadlineS, 90);
  assert.is(loadConfig('enabled = no', '').disabled, true);
  const file = join(tmp, 'server.conf');
  for (const [k, v] of Object.entries(SERVER_KEYS)) {
    assert.ok(serverConf5().includes(`.B "${k} = ${roff(v.example)}"`), `server.conf(5) lacks ${k}`);
    if (k === 'ek-ca') continue; // names a file that must exist
    writeFileSync(file, `${k} = ${v.example}\n`);
    const r = resolveServerConfig({ configFile: file, env: {} });
    assert.ok(r.origins[k as keyof typeof SERVER_KEYS], `${k} = ${v.example} is not read`);
  }
  assert.match(bootkeyServer8(), /server\.conf\(5\)/);
});

function complete(words: string[]): string[] {
  const script = join(tmp, 'bootkey.bash');
  writeFileSync(script, bashCompletion());
  const arr = words.map((w) => `'${w}'`).join(' ');
  const out = execFileSync('bash', ['-c', `source ${script}; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _bootkey; printf '%s\\n' "\${COMPREPLY[@]}"`], { cwd: tmp });
  return out.toString().split('\n').filter(Boolean).sort();
}

test('bash completion: commands by prefix, then that command\'s options', () => {
  const top = complete(['bootkey', '']);
  for (const w of ['tpm', 'eventlog', 'policy', 'server', 'admin', 'enroll', 'unlock', 'efi', 'config', 'setup', '--help', '--version']) assert.ok(top.includes(w), `top: ${w}`);
  assert.equal(complete(['bootkey', 'se']), ['server', 'setup']);
  assert.equal(complete(['bootkey', 'setup', '']), ['machine', 'server']);
  assert.ok(complete(['bootkey', 'tpm', '']).includes('quote'));
  assert.equal(complete(['bootkey', 'setup', 'machine', '--enr']), ['--enrol-token']);
  assert.ok(complete(['bootkey', 'server', 'init', '--']).includes('--ca-dir'));
  assert.not.ok(complete(['bootkey', 'server', '--']).includes('--ca-dir'), 'bootkey server has no --ca-dir');
  assert.ok(complete(['bootkey', 'server', '--']).includes('--listen'));
});

test('setup server --dry-run prints the steps and changes nothing', async () => {
  const root = join(tmp, 'dry');
  const r = await cli(['setup', 'server', '--dry-run', '--root', root, '--san', 'kr.example']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /1\/2 would run: bootkey server init --state .*dry\/var\/lib\/bootkey --ca-dir .*dry\/var\/lib\/bootkey-ca --san kr\.example/);
  assert.match(r.stdout, /2\/2 would run: systemctl --root=.*dry enable bootkey-server\.service/);
  assert.not.ok(existsSync(root));
});

test('setup server --root: the state under the root (CA key outside it), the unit enabled in the root', async (ctx) => {
  const root = join(tmp, 'srvroot');
  mkdirSync(join(root, 'usr/lib/systemd/system'), { recursive: true });
  mkdirSync(join(root, 'etc'), { recursive: true });
  copyFileSync(join(ROOT, 'systemd/bootkey-server.service'), join(root, 'usr/lib/systemd/system/bootkey-server.service'));
  const r = await cli(['setup', 'server', '--root', root]);
  assert.is(r.code, 0, r.stderr);
  for (const f of ['ca.pem', 'server.pem', 'server.key', 'master.key', 'admin.token', 'token-signing.key']) assert.ok(existsSync(join(root, 'var/lib/bootkey', f)), f);
  assert.not.ok(existsSync(join(root, 'var/lib/bootkey/ca.key')));
  assert.ok(existsSync(join(root, 'var/lib/bootkey-ca/ca.key')));
  assert.is(lstatSync(join(root, 'var/lib/bootkey/admin.token')).mode & 0o777, 0o600);
  const wants = join(root, 'etc/systemd/system/multi-user.target.wants/bootkey-server.service');
  assert.ok(lstatSync(wants).isSymbolicLink(), 'systemctl --root enable made the wants link');
  assert.is(readlinkSync(wants), '/usr/lib/systemd/system/bootkey-server.service');
  void ctx;
});

test('setup machine: missing enrolment options are a usage error, also for --dry-run', async () => {
  const r = await cli(['setup', 'machine', '--dry-run', '--server', 'https://kr.example:7443', '--ca', 'ca.pem', '--device', '/dev/vda2', '--key-file', 'k']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /missing --enrol-token/);
  const r2 = await cli(['setup', 'machine', '--dry-run', '--server', 'https://kr.example:7443', '--ca', 'ca.pem', '--enrol-token', 't', '--device', '/dev/vda2', '--key-file', 'k']);
  assert.is(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /1\/3 would run: bootkey enroll --server https:\/\/kr\.example:7443 --device \/dev\/vda2/);
  assert.match(r2.stdout, /2\/3 would run: write \/etc\/dracut\.conf\.d\/90-bootkey\.conf/);
  assert.match(r2.stdout, /3\/3 would run: (dracut --force --regenerate-all|transactional-update|sdbootutil)/);
});

test('setup machine --agent: a 4th step enables bootkey-agent@ for the device, escaped as systemd-escape --path does', async () => {
  const dev = '/dev/disk/by-uuid/0b0071e5-0000-4000-8000-0000000000f5';
  const r = await cli(['setup', 'machine', '--dry-run', '--agent', '--server', 'https://kr.example:7443', '--ca', 'ca.pem', '--enrol-token', 't', '--device', dev, '--key-file', 'k']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /4\/4 would run: systemctl enable (--now )?bootkey-agent@dev-disk-by\\x2duuid-0b0071e5\\x2d0000\\x2d4000\\x2d8000\\x2d0000000000f5\.service/);
  const without = await cli(['setup', 'machine', '--dry-run', '--server', 'https://kr.example:7443', '--ca', 'ca.pem', '--enrol-token', 't', '--device', dev, '--key-file', 'k']);
  assert.not.match(without.stdout, /bootkey-agent@/);
  // the escape is systemd's (checked against systemd-escape itself when it is installed)
  const paths = ['/dev/vda2', dev, '/dev/mapper/luks-x', '//dev//a.b/', '/dev/.hidden', '/a b/ü-č'];
  for (const p of paths) {
    let want: string;
    try {
      want = execFileSync('systemd-escape', ['--path', p], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return console.log('  skip: systemd-escape not installed');
      throw e;
    }
    assert.is(systemdEscapePath(p), want, p);
  }
  assert.is(agentUnit('/dev/vda2'), 'bootkey-agent@dev-vda2.service');
});

test('initrd regeneration: transactional-update on a transactional system, else sdbootutil, else dracut', () => {
  const r = join(tmp, 'regen');
  assert.equal(initrdCommand(r), ['dracut', '--force', '--regenerate-all']);
  mkdirSync(join(r, 'usr/bin'), { recursive: true });
  writeFileSync(join(r, 'usr/bin/sdbootutil'), '');
  assert.equal(initrdCommand(r), ['sdbootutil', 'mkinitrd']);
  mkdirSync(join(r, 'usr/sbin'), { recursive: true });
  writeFileSync(join(r, 'usr/sbin/transactional-update'), '');
  assert.equal(initrdCommand(r), ['transactional-update', '--non-interactive', 'initrd']);
});

/** `systemd-analyze security --offline=yes UNIT`'s report (it exits non-zero above its threshold); undefined (skip) without systemd-analyze. */
function securityReport(unitFile: string): string | undefined {
  try {
    return execFileSync('systemd-analyze', ['security', '--offline=yes', unitFile], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    const err = e as { code?: string; stdout?: Buffer };
    if (err.code === 'ENOENT') {
      console.log('  skip: systemd-analyze not installed');
      return undefined;
    }
    return err.stdout?.toString() ?? '';
  }
}

test('systemd-analyze security scores bootkey-server.service "OK" or better (exposure < 2.0)', () => {
  const out = securityReport(join(ROOT, 'systemd/bootkey-server.service'));
  if (out === undefined) return;
  const m = /Overall exposure level for bootkey-server\.service: (\d+\.\d+) (\w+)/.exec(out);
  assert.ok(m, out.slice(-300));
  assert.ok(Number(m![1]) < 2.0, `exposure ${m![1]} ${m![2]}`);
  assert.ok(['OK', 'SAFE'].includes(m![2]), m![2]);
  // the settings the docs promise
  const unit = readFileSync(join(ROOT, 'systemd/bootkey-server.service'), 'utf8');
  for (const k of ['DynamicUser=yes', 'StateDirectory=bootkey', 'ConfigurationDirectory=bootkey', 'ProtectSystem=strict', 'NoNewPrivileges=yes', 'SystemCallFilter=@system-service', 'CapabilityBoundingSet=\n']) assert.ok(unit.includes(k), k);
  assert.not.match(unit, /^MemoryDenyWriteExecute=yes/m);
});

test('bootkey-agent@.service: systemd-analyze verify passes for an instance (in a root holding the executable) and security scores "OK" (exposure <= 2.0)', () => {
  const unitFile = join(ROOT, 'systemd/bootkey-agent@.service');
  const unit = readFileSync(unitFile, 'utf8');
  // what docs/PACKAGING.md promises: booted system only, the device from the instance, root without capabilities, the TPM and that device only, keeps retrying
  for (const k of ['ConditionPathExists=!/etc/initrd-release', 'ConditionSecurity=tpm2', 'ExecStart=/usr/libexec/bootkey/bootkey agent --device %f\n', 'Requires=%i.device', 'User=root', 'CapabilityBoundingSet=\n',
    'DevicePolicy=closed', 'DeviceAllow=/dev/tpmrm0 rw', 'DeviceAllow=%f r', 'ProtectSystem=strict', 'NoNewPrivileges=yes', 'Restart=always', 'StartLimitIntervalSec=0', 'SystemCallFilter=@system-service', 'WantedBy=multi-user.target']) {
    assert.ok(unit.includes(k), k);
  }
  assert.not.match(unit, /^PrivateUsers=yes/m); // root would lose the owner's read on the IMA lists
  assert.not.match(unit, /^PrivateDevices=yes/m); // would hide /dev/tpmrm0
  const out = securityReport(unitFile);
  if (out === undefined) return;
  const m = /Overall exposure level for bootkey-agent@\S*\.service: (\d+\.\d+) (\w+)/.exec(out);
  assert.ok(m, out.slice(-300));
  assert.ok(Number(m![1]) <= 2.0, `exposure ${m![1]} ${m![2]}`);
  assert.ok(['OK', 'SAFE'].includes(m![2]), m![2]);
  // verify an instance (the device /dev/vda2): in a root with the system's units and an executable at the ExecStart path
  const r = join(tmp, 'agent-root');
  mkdirSync(join(r, 'usr/libexec/bootkey'), { recursive: true });
  mkdirSync(join(r, 'usr/lib/systemd'), { recursive: true });
  execFileSync('cp', ['-a', '/usr/lib/systemd/system', join(r, 'usr/lib/systemd/')]);
  copyFileSync('/bin/true', join(r, 'usr/libexec/bootkey/bootkey'));
  copyFileSync(unitFile, join(r, 'usr/lib/systemd/system/bootkey-agent@.service'));
  const verify = () => execFileSync('systemd-analyze', ['verify', '--man=no', `--root=${r}`, 'bootkey-agent@dev-vda2.service'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  assert.is(verify(), '');
  // a broken unit is caught by the same check (the check can fail)
  writeFileSync(join(r, 'usr/lib/systemd/system/bootkey-agent@.service'), unit.replace('Type=exec', 'Type=nonsense').replace('ExecStart=/usr/libexec/bootkey/bootkey agent', 'ExecStart=/usr/libexec/bootkey/missing agent'));
  assert.throws(verify);
});

test('MemoryDenyWriteExecute would kill the server: the executable aborts under the kernel\'s MDWE (what systemd >= 253 applies), runs with --jitless', () => {
  const sea = join(ROOT, 'dist/bootkey-linux-x64');
  if (!existsSync(sea)) {
    console.log('  skip: dist/bootkey-linux-x64 not built (npm run build)');
    return;
  }
  // prctl(PR_SET_MDWE = 65, PR_MDWE_REFUSE_EXEC_GAIN = 1), kept across execve; Linux >= 6.3
  const py = `import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    print('no-mdwe'); sys.exit(0)
os.execv(sys.argv[1], [sys.argv[1], '--version'])`;
  const runIt = (env: NodeJS.ProcessEnv) => {
    try {
      return { code: 0, out: execFileSync('python3', ['-c', py, sea], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }).toString() };
    } catch (e) {
      const err = e as { status?: number; signal?: string; stderr?: Buffer };
      return { code: err.status ?? -1, signal: err.signal, out: String(err.stderr ?? '') };
    }
  };
  const jit = runIt({ NODE_OPTIONS: '' });
  if (jit.out === 'no-mdwe\n') {
    console.log('  skip: this kernel has no PR_SET_MDWE (Linux < 6.3)');
    return;
  }
  assert.is.not(jit.code, 0, 'V8 with its JIT must not survive MDWE (else the unit could set MemoryDenyWriteExecute=yes)');
  assert.match(jit.out, /SetPermissions|Check failed/);
  const jitless = runIt({ NODE_OPTIONS: '--jitless' });
  assert.is(jitless.code, 0, jitless.out);
  assert.match(jitless.out, /bootkey \d+\.\d+\.\d+/);
});

test.run();
