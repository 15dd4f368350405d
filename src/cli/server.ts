/**
 * `bootkey server init`, `bootkey server`, `bootkey admin`: the key-release server and its
 * admin client (src/server/). See docs/SERVER.md.
 * @module
 */
import { readFileSync } from 'node:fs';
import { UsageError, InputError } from '../errors.ts';
import { type Command, type Parsed, req, opt, flag, readInput, printJson, EXIT_OK } from './command.ts';
// The server modules (and better-sqlite3, a native addon) are imported lazily in run(): the
// initrd executable never loads them for enroll/unlock/tpm/eventlog (issue 5).
import { adminRequest } from '../server/admin-client.ts';
import { ServerError } from '../server/errors.ts';
import { SERVER_KEYS, resolveServerConfig, envName } from '../config/server-conf.ts';
import { ConfigError } from '../config/conf.ts';

/** Reported by bootkey_build_info; the same as `bootkey --version`. */
const BOOTKEY_VERSION = '0.1.0';

function intOpt(args: Parsed, name: string, min: number, max: number): number | undefined {
  const v = opt(args, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name}: expected an integer in ${min}..${max}`);
  return Number(v);
}

const init: Command = {
  path: ['server', 'init'],
  summary: 'create a server state directory (CA, TLS certificate, master key, admin token)',
  help: `usage: bootkey server init --state DIR [--ca-dir CADIR] [--san NAME|IP]... [--json]

Creates DIR (mode 0700) with ca.pem (the CA clients pin with --ca), server.pem/server.key
(ECDSA P-256; SANs localhost, 127.0.0.1, ::1, 10.0.2.2 and every --san), token-signing.key
(Ed25519, signs each machine's LUKS2 token), master.key (0600, encrypts server shares at rest),
admin.token (0600) and the SQLite database. The CA's private key goes to CADIR/ca.key (default:
the sibling directory DIR-ca, mode 0700), never into DIR: no server or replica needs it (move it
offline; re-issuing server.pem needs it back via --ca-dir). A DIR/ca.key left by an older init is
moved there. Existing files are kept (delete server.pem and server.key to re-issue the certificate
with new names). Needs the openssl command.`,
  options: { state: { type: 'string' }, 'ca-dir': { type: 'string' }, san: { type: 'string', multiple: true }, json: { type: 'boolean' } },
  async run(args) {
    const dir = req(args, 'state');
    const sans = (args.values.san as string[] | undefined) ?? [];
    const { initState } = await import('../server/pki.ts');
    const r = await initState(dir, { sans, caDir: opt(args, 'ca-dir') });
    if (flag(args, 'json')) printJson(r);
    else {
      process.stdout.write(`bootkey server state in ${r.dir}\n`);
      if (r.created.length) process.stdout.write(`created: ${r.created.join(', ')}\n`);
      if (r.kept.length) process.stdout.write(`kept: ${r.kept.join(', ')}\n`);
      if (r.moved.length) process.stdout.write(`moved: ${r.moved.join(', ')}\n`);
      process.stdout.write(`clients pin ${dir}/ca.pem; admin uses ${dir}/admin.token (keep it on this host); enrolling hosts get an enrolment token: bootkey admin token create\n`);
      process.stdout.write(`the CA private key is ${r.caDir}/ca.key: no server needs it, keep it offline\n`);
    }
    return EXIT_OK;
  },
};

const serve: Command = {
  path: ['server'],
  summary: 'run the key-release server until SIGTERM/SIGINT',
  help: `usage: bootkey server [--config FILE] [--check-config] [--state DIR] [--listen HOST:PORT] [--store URL]
                      [--released-pcr N] [--ek-ca FILE] [--nonce-ttl SECONDS] [--max-connections N]
                      [--listen-backlog N] [--rate-limit-peer B/R] [--rate-limit-machine B/R]
                      [--message-timeout S] [--connection-timeout S] [--metrics HOST:PORT|off] [--dashboard HOST:PORT|off]
                      [--webhook-url URL] [--webhook-secret-file FILE] [--webhook-attempts N] [--runtime-hook FILE]

Serves enrolment, boot-time attestation and admin requests over TLS 1.3 (default listen
0.0.0.0:7443, DEFAULT_LISTEN in src/server/server.ts). --released-pcr: the PCR the client extends after a release (default 15; not 16-23, which can be
reset during a boot, and not a PCR of the default policy 0,2,4,7).
--ek-ca: PEM bundle of TPM manufacturer CAs; enrolment then requires an EK certificate that
chains to it. Logs one key=value line per event on stdout (journald-friendly); never a secret.
The master key comes from DIR/master.key or BOOTKEY_MASTER_KEY (hex or base64).
--store: sqlite (default, DIR/bootkey.db) or postgres://USER@HOST:PORT/DB[?pool_max=N];
several servers on one PostgreSQL database are replicas (docs/SCALE.md).
--metrics: Prometheus text exposition, plain HTTP GET /metrics (bind it to loopback).
--dashboard: the web dashboard, HTTPS with the server certificate; sign in with the admin token.
--webhook-url, --webhook-secret-file, --webhook-attempts, --runtime-hook: what a runtime (IMA)
attestation failure sets off besides the audit entry and the refused next boot (docs/SERVER.md).

Every flag is also a key of /etc/bootkey/server.conf (or --config FILE, or BOOTKEY_CONFIG), and
an environment variable BOOTKEY_<KEY> (BOOTKEY_LISTEN, BOOTKEY_STORE, ...). Precedence: flag >
environment > file > default. --check-config reads them all, prints the effective settings
with their origin, and exits 1 naming the key and line of the first problem (bootkey.conf(5),
docs/SERVER.md).`,
  options: {
    config: { type: 'string' }, 'check-config': { type: 'boolean' },
    ...Object.fromEntries(Object.keys(SERVER_KEYS).map((k) => [k, { type: 'string' as const }])),
  },
  async run(args) {
    const flags: Record<string, string> = {};
    for (const k of Object.keys(SERVER_KEYS)) {
      const v = opt(args, k);
      if (v !== undefined) flags[k] = v;
    }
    const cfg = resolveServerConfig({ configFile: opt(args, 'config'), flags });
    const st = cfg.settings;
    if (st['released-pcr'] !== undefined) {
      const { releasedPcrProblem } = await import('../server/released-pcr.ts');
      const { GENERATED_POLICY_PCRS } = await import('../server/service.ts');
      const bad = releasedPcrProblem(st['released-pcr'], GENERATED_POLICY_PCRS);
      const o = cfg.origins['released-pcr'];
      if (bad && o?.from === 'flag') throw new UsageError(`--released-pcr: ${bad}`);
      if (bad) throw new ConfigError(`${o?.from === 'file' ? `${cfg.file}:${o.line}: key "released-pcr"` : o?.from === 'env' ? envName('released-pcr') : '--released-pcr'}: ${bad}`, { key: 'released-pcr', line: o?.line });
    }
    if (flag(args, 'check-config')) {
      const { describeStore } = await import('../server/store-factory.ts');
      const lines = [`configuration ${cfg.file ?? '(no file)'}: ok`];
      for (const k of Object.keys(SERVER_KEYS) as (keyof typeof SERVER_KEYS)[]) {
        const o = cfg.origins[k];
        if (!o) continue;
        const v = st[k];
        const shown = k === 'store' ? describeStore(String(v)) : typeof v === 'object' && v !== null ? `${(v as { burst: number }).burst}/${(v as { perSecond: number }).perSecond}` : String(v ?? 'off');
        lines.push(`${k} = ${shown}    (${o.from === 'file' ? `${cfg.file}:${o.line}` : o.from === 'env' ? envName(k) : `--${k}`})`);
      }
      if (st.state === undefined) lines.push('warning: no state directory (state = DIR, BOOTKEY_STATE or --state): the server will not start');
      process.stdout.write(lines.join('\n') + '\n');
      return EXIT_OK;
    }
    if (st.state === undefined) throw new UsageError('missing the state directory: --state DIR, BOOTKEY_STATE, or "state = DIR" in server.conf');
    const stateDir = st.state;
    const log = (line: string) => process.stdout.write(line + '\n');
    const { createStore } = await import('../server/store-factory.ts');
    const store = createStore(st.store, stateDir, { log });
    const { startServer } = await import('../server/server.ts');
    const srv = await startServer({
      stateDir,
      listen: st.listen,
      releasedPcr: st['released-pcr'],
      nonceTtlMs: st['nonce-ttl'] === undefined ? undefined : st['nonce-ttl'] * 1000,
      ekCaFile: st['ek-ca'],
      maxConnections: st['max-connections'],
      listenBacklog: st['listen-backlog'],
      rateLimit: { perPeer: st['rate-limit-peer'], perMachine: st['rate-limit-machine'] },
      messageTimeoutMs: st['message-timeout'] === undefined ? undefined : st['message-timeout'] * 1000,
      connectionTimeoutMs: st['connection-timeout'] === undefined ? undefined : st['connection-timeout'] * 1000,
      metricsListen: st.metrics ?? undefined,
      dashboardListen: st.dashboard ?? undefined,
      webhook: {
        url: st['webhook-url'], attempts: st['webhook-attempts'], command: st['runtime-hook'],
        secret: st['webhook-secret-file'] ? readWebhookSecret(st['webhook-secret-file']) : undefined,
      },
      version: BOOTKEY_VERSION,
      log,
      store,
    });
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        process.stdout.write(`event=signal signal=${sig}\n`);
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        resolve();
      };
      const onTerm = () => stop('SIGTERM');
      const onInt = () => stop('SIGINT');
      process.on('SIGTERM', onTerm);
      process.on('SIGINT', onInt);
    });
    await srv.close();
    return EXIT_OK;
  },
};

const OPS = ['list', 'show', 'set-policy', 'put-policy', 'add-boot', 'revoke', 'unrevoke', 'rotate', 'delete', 'audit', 'gc', 'token', 'staged', 'set-runtime-policy', 'set-stale-limit', 'clear', 'approve'];
const TOKEN_OPS = ['create', 'list', 'revoke'];
const STAGED_OPS = ['list', 'approve', 'drop'];

function time(t: unknown): string {
  return typeof t === 'number' ? new Date(t).toISOString().replace(/\.\d+Z$/, 'Z') : '-';
}

function printPlain(op: string, r: unknown): void {
  const out: string[] = [];
  if (op === 'list' && Array.isArray(r)) {
    out.push(['ID'.padEnd(20), 'STATE'.padEnd(8), 'HOSTNAME'.padEnd(24), 'LAST RESULT'.padEnd(24), 'LAST TIME'.padEnd(21), 'RUNTIME'].join(' '));
    for (const m of r as Record<string, unknown>[]) {
      const rt = m.runtime as { state?: string; entries?: number } | undefined;
      out.push([String(m.id).padEnd(20), String(m.state).padEnd(8), String(m.hostname).padEnd(24), String(m.lastResult ?? '-').padEnd(24), time(m.lastTime).padEnd(21), rt ? `${rt.state}${rt.state === 'attesting' ? ` (${rt.entries} entries)` : ''}` : '-'].join(' '));
    }
    if (!r.length) out.push('(no machines)');
  } else if (op === 'staged-list' && Array.isArray(r)) {
    out.push(['ID'.padEnd(20), 'MACHINE'.padEnd(20), 'STATE'.padEnd(8), 'MODE'.padEnd(10), 'USED'.padEnd(5), 'CREATED'.padEnd(21), 'LABEL'].join(' '));
    for (const x of r as Record<string, unknown>[]) {
      out.push([String(x.id).padEnd(20), String(x.machine).padEnd(20), String(x.state).padEnd(8), String(x.mode).padEnd(10), (x.used ? 'yes' : 'no').padEnd(5), time(x.created).padEnd(21), String(x.label ?? '')].join(' '));
      for (const l of (x.summary as string[] | undefined) ?? []) out.push(`    ${l}`);
    }
    if (!r.length) out.push('(no staged boots)');
  } else if (op === 'token-list' && Array.isArray(r)) {
    out.push(['ID'.padEnd(20), 'STATE'.padEnd(8), 'USES LEFT'.padEnd(10), 'EXPIRES'.padEnd(21), 'LAST USED'.padEnd(21), 'COMMENT'].join(' '));
    for (const t of r as Record<string, unknown>[]) {
      out.push([String(t.id).padEnd(20), String(t.state).padEnd(8), `${t.usesLeft}/${t.uses}`.padEnd(10), time(t.expiresAt).padEnd(21), time(t.lastUsed).padEnd(21), String(t.comment ?? '')].join(' '));
    }
    if (!r.length) out.push('(no enrolment tokens)');
  } else if (op === 'token-create' && r && typeof r === 'object') {
    const t = r as Record<string, unknown>;
    out.push(String(t.token), `# enrolment token ${t.id}: ${t.uses} use(s), expires ${time(t.expiresAt)}. Shown once: give it to the enrolling host (bootkey enroll --enrol-token FILE).`);
  } else if (op === 'audit' && Array.isArray(r)) {
    for (const a of r as Record<string, unknown>[]) {
      const reasons = Array.isArray(a.reasons) && a.reasons.length ? ` — ${(a.reasons as string[]).join('; ')}` : '';
      out.push(`${time(a.time)} #${a.seq} ${a.who} ${a.action} ${a.machine ?? '-'} ${a.result}${a.code ? ` ${a.code}` : ''}${a.peer ? ` peer=${a.peer}` : ''}${reasons}`);
    }
    if (!r.length) out.push('(no audit entries)');
  } else if (op === 'show' && r && typeof r === 'object') {
    const m = r as Record<string, unknown>;
    for (const k of ['id', 'hostname', 'machineId', 'state', 'releasedPcr', 'ekName', 'akName', 'lastResult', 'lastResetCount', 'lastRestartCount']) out.push(`${k}: ${m[k] ?? '-'}`);
    out.push(`created: ${time(m.created)}`, `updated: ${time(m.updated)}`, `lastTime: ${time(m.lastTime)}`);
    const sel = m.quotedSelection as { bank: string; pcrs: number[] }[] | undefined;
    if (sel) out.push(`quoted PCRs: ${sel.map((s) => `${s.bank}:${s.pcrs.join(',')}`).join(' ')}`);
    const reasons = m.lastReasons as string[] | undefined;
    if (reasons?.length) out.push('last failure reasons:', ...reasons.map((x) => `  - ${x}`));
    const p = m.policy as { bank?: string; pcrs?: number[]; rules?: Record<string, unknown> } | undefined;
    if (p) out.push(`policy: bank ${p.bank}, PCRs ${p.pcrs?.join(',')}, rules ${Object.keys(p.rules ?? {}).join(', ')} (--json for the whole policy)`);
    const rt = m.runtime as { state: string; entries: number; lastReport: number | null; staleLimit: number | null; reason: string | null; failures?: string[]; approvedUntil?: number | null } | undefined;
    if (rt) {
      out.push(`runtime: ${rt.state}, ${rt.entries} IMA entries verified this boot, last report ${time(rt.lastReport)}, stale limit ${rt.staleLimit ? `${rt.staleLimit} s` : 'off'}${rt.approvedUntil ? `, approved until ${time(rt.approvedUntil)}` : ''}`);
      if (rt.reason) out.push(`runtime reason: ${rt.reason}`);
      for (const f of rt.failures ?? []) out.push(`  - ${f}`);
    }
  } else if (r && typeof r === 'object') {
    for (const [k, v] of Object.entries(r)) out.push(`${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  } else out.push(String(r));
  process.stdout.write(out.join('\n') + '\n');
}

const admin: Command = {
  path: ['admin'],
  summary: 'administer a key-release server (list, show, set-policy, revoke, ...)',
  help: `usage: bootkey admin --server https://HOST:PORT --ca FILE --admin-token FILE <op> [MACHINE|NAME]
                     [--policy FILE] [--allow-permissive] [--eventlog FILE] [--limit N] [--allow-secureboot-off] [--json]
                     [--off] [--for DURATION]

ops: list                      machines with state, last result and time
     show MACHINE              one machine, its policy and its last failure reasons
     set-policy MACHINE --policy FILE   replace the machine's policy (validated)
     put-policy NAME --policy FILE      store a named policy for \`bootkey enroll --policy NAME\`
                               both refuse a policy that pins no code (no rules, only allow-any,
                               no firmware/boot-chain/Secure Boot keys/PCR 0,2,4) unless --allow-permissive
     add-boot MACHINE --eventlog FILE   merge another known-good boot into the policy
     revoke MACHINE / unrevoke MACHINE  (a revoked machine's EK cannot re-enrol until unrevoked or deleted)
     rotate MACHINE            new server share (the machine must then be re-enrolled, see docs/SERVER.md)
     delete MACHINE            only a revoked (or pending) machine: revoke it first
     audit [MACHINE] [--limit N]        the audit log, newest last
     gc                        delete stale pending enrolments now
     token create [--uses N] [--expires DURATION] [--comment TEXT]
                               an enrolment token (default 1 use, 24h; DURATION like 30m, 24h, 7d):
                               printed once; it can only enrol (bootkey enroll --enrol-token FILE)
     token list                enrolment tokens (never the secrets)
     token revoke ID           ends an enrolment token at once
     staged list [MACHINE]     boots machines staged for themselves (bootkey stage): id, state
                               (pending, active, retired, dropped), label, what each widened
     staged approve ID         a pending staged boot counts from now on (policy staging.requireApproval)
     staged drop ID            a pending or active staged boot no longer counts
     set-runtime-policy MACHINE FILE | --off
                               the machine's runtime (IMA) policy (bootkey's format: 'bootkey runtime-policy import' converts Keylime's);
                               without one, runtime attestation (bootkey agent) is off for it
     set-stale-limit MACHINE DURATION|off
                               no verified runtime report for longer than DURATION (e.g. 2h, 7d):
                               the next boot is refused RUNTIME_STALE (default off)
     clear MACHINE             end a runtime failure (RUNTIME_FAILED): the next boot may unlock
     approve MACHINE [--for DURATION]
                               let one boot of a stale machine through (default --for 1h), audited;
                               --for 0 withdraws an approval
list and show give each machine's runtime state: off, new, attesting, failed (reason and
entries), stale.`,
  options: {
    server: { type: 'string' }, ca: { type: 'string' }, 'admin-token': { type: 'string' }, policy: { type: 'string' }, eventlog: { type: 'string' },
    limit: { type: 'string' }, 'allow-secureboot-off': { type: 'boolean' }, json: { type: 'boolean' },
    'allow-permissive': { type: 'boolean' }, uses: { type: 'string' }, expires: { type: 'string' }, comment: { type: 'string' },
    off: { type: 'boolean' }, for: { type: 'string' },
  },
  positionals: [1, 3],
  async run(args) {
    let [op, target]: (string | undefined)[] = args.positionals;
    if (!OPS.includes(op)) throw new UsageError(`admin: unknown operation "${op}" (${OPS.join(', ')})`);
    const fields: { machine?: string; policy?: string; eventLog?: Buffer; limit?: number; flag?: boolean; allowPermissive?: boolean; uses?: number; ttl?: number; comment?: string; staged?: string; runtimePolicy?: string; seconds?: number } = {};
    const duration = async (v: string, what: string): Promise<number> => {
      const { parseDuration } = await import('../server/enrol-tokens.ts');
      try {
        return parseDuration(v);
      } catch (e) {
        throw new UsageError(`${what}: ${(e as Error).message}`);
      }
    };
    if (op === 'staged') {
      const sub = args.positionals[1];
      if (!STAGED_OPS.includes(sub)) throw new UsageError(`admin staged: expected ${STAGED_OPS.join(', ')}`);
      op = `staged-${sub}`;
      const arg = args.positionals[2];
      if (sub === 'list') target = arg;
      else {
        if (!arg || !/^s-[0-9a-f]{16}$/.test(arg)) throw new UsageError(`admin staged ${sub}: needs a staged boot id (s-…, see \`admin staged list\`)`);
        fields.staged = arg;
        target = undefined;
      }
    } else if (op === 'token') {
      const sub = args.positionals[1];
      if (!TOKEN_OPS.includes(sub)) throw new UsageError(`admin token: expected ${TOKEN_OPS.join(', ')}`);
      op = `token-${sub}`;
      target = args.positionals[2];
      if (sub === 'revoke' && !target) throw new UsageError('admin token revoke: needs a token id (t-…, see `admin token list`)');
      if (sub !== 'revoke' && target) throw new UsageError(`admin token ${sub}: takes no argument`);
      if (sub === 'create') {
        const uses = intOpt(args, 'uses', 1, 100000);
        if (uses !== undefined) fields.uses = uses;
        const exp = opt(args, 'expires');
        if (exp !== undefined) {
          const { parseDuration } = await import('../server/enrol-tokens.ts');
          try {
            fields.ttl = parseDuration(exp);
          } catch (e) {
            throw new UsageError(`--expires: ${(e as Error).message}`);
          }
        }
        const comment = opt(args, 'comment');
        if (comment !== undefined) {
          if (comment.length > 255) throw new UsageError('--comment: at most 255 characters');
          fields.comment = comment;
        }
      }
    } else if (op === 'set-runtime-policy') {
      const file = args.positionals[2];
      if (!file === !flag(args, 'off')) throw new UsageError('admin set-runtime-policy: needs MACHINE and a policy FILE, or MACHINE --off');
      if (file) fields.runtimePolicy = readInput(file, 'runtime policy').toString('utf8');
    } else if (op === 'set-stale-limit') {
      const v = args.positionals[2];
      if (!v) throw new UsageError('admin set-stale-limit: needs MACHINE and a DURATION (e.g. 2h) or off');
      fields.seconds = v === 'off' ? 0 : await duration(v, 'set-stale-limit');
    } else if (args.positionals.length > 2) throw new UsageError(`admin ${op}: too many arguments`);
    if (op === 'approve') {
      const f = opt(args, 'for') ?? '1h';
      fields.seconds = f === '0' ? 0 : await duration(f, '--for');
    }
    const needsTarget = !['list', 'audit', 'gc', 'token-create', 'token-list', 'staged-list', 'staged-approve', 'staged-drop'].includes(op);
    if (needsTarget && !target) throw new UsageError(`admin ${op}: needs a ${op === 'put-policy' ? 'policy name' : 'machine id'}`);
    const token = readInput(req(args, 'admin-token'), 'admin token').toString('utf8').trim();
    const ca = readInput(req(args, 'ca'), 'CA certificate');
    if (target) fields.machine = target;
    if (op === 'set-policy' || op === 'put-policy') {
      fields.policy = readInput(req(args, 'policy'), 'policy').toString('utf8');
      // Checked here too (the server checks it in any case), to refuse before sending.
      const { parsePolicy } = await import('../measuredboot/policy-load.ts');
      const { permissiveReason } = await import('../measuredboot/policy-lint.ts');
      let why: string | undefined;
      try {
        why = permissiveReason(parsePolicy(fields.policy));
      } catch {
        why = undefined; // an invalid policy: the server names the error
      }
      if (why && !flag(args, 'allow-permissive')) throw new InputError('PERMISSIVE_POLICY', `--policy: ${why} (give --allow-permissive to store it anyway)`);
      if (flag(args, 'allow-permissive')) fields.allowPermissive = true;
    }
    if (op === 'add-boot') fields.eventLog = readInput(req(args, 'eventlog'), 'event log');
    const limit = intOpt(args, 'limit', 1, 100000);
    if (limit !== undefined) fields.limit = limit;
    if (flag(args, 'allow-secureboot-off')) fields.flag = true;
    let r: unknown;
    try {
      r = await adminRequest({ server: req(args, 'server'), ca, adminToken: token }, op, fields);
    } catch (e) {
      if (e instanceof ServerError && e.failures?.length) throw new InputError(e.code, `${e.message}\n${e.failures.join('\n')}`);
      throw e;
    }
    if (flag(args, 'json')) printJson(r);
    else printPlain(op, r);
    return EXIT_OK;
  },
};

export const serverCommands: Command[] = [init, serve, admin];

/** The webhook's HMAC key: the file's bytes (trailing newline removed); at least 16. */
function readWebhookSecret(file: string): Buffer {
  let b: Buffer;
  try {
    b = readFileSync(file);
  } catch (e) {
    throw new ConfigError(`webhook-secret-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { key: 'webhook-secret-file' });
  }
  const key = Buffer.from(b.toString('utf8').replace(/\r?\n$/, ''), 'utf8');
  if (key.length < 16) throw new ConfigError(`webhook-secret-file ${file}: the key must have at least 16 bytes`, { key: 'webhook-secret-file' });
  return key;
}
