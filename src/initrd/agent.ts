/**
 * `bootkey initrd-agent`: the ask-password agent of the initrd (systemd/bootkey-askpass.service).
 *
 * systemd-cryptsetup asks for a volume's passphrase by writing `/run/systemd/ask-password/ask.*`
 * (`[Ask]` `Socket=`, `Id=cryptsetup:DEV`, `NotAfter=`); every agent may answer by sending
 * "+" + passphrase to that AF_UNIX datagram socket (systemd's "Password Agents" spec). The
 * console prompt is shown at the same time by systemd's own agent, so the boot never waits on
 * bootkey: whoever answers first wins. This agent, for each question whose DEV carries a bootkey
 * token (the clevis model):
 *
 *  1. attests to the token's servers (in parallel, bounded retries with backoff, one total
 *     deadline: `rd.bootkey.deadline=` on the kernel command line, else `deadline=` in
 *     /etc/bootkey/bootkey.conf, else 60 s), one console line per attempt and the refusal reasons;
 *  2. unseals the released share, extends the released PCR, derives the LUKS passphrase;
 *  3. answers with `systemd-reply-password 1 SOCKET`, the passphrase on its stdin (Node has no
 *     AF_UNIX datagram sockets; docs/ARCHITECTURE.md "Initrd").
 *
 * Then it steps aside: it exits when no question for a bootkey volume is left, when the user
 * answered at the prompt, or after the deadline. Each device is tried once per boot
 * (/run/bootkey/tried: device names only); a second release in the same boot would be refused
 * by the server anyway (the released PCR is extended).
 *
 * The key lives in Buffers that are zeroed after use and in the pipe to systemd-reply-password;
 * nothing secret is logged or written. Timing of the phases (process start-up, token, TPM, TLS
 * connect, the two round trips — the second includes the server's verification) is logged for
 * `npm run bench:boot`.
 * @module
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, appendFileSync, writeFileSync, watch, type FSWatcher } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { Tpm } from '../tpm/tpm.ts';
import { readToken, unlock } from './unlock.ts';
import { ClientError } from '../client/connect.ts';
import type { BootkeyToken } from '../client/token.ts';
import { loadMachineConf, type MachineSettings } from '../config/machine-conf.ts';

export const ASK_DIR = '/run/systemd/ask-password';
export const CONFIG_FILE = '/etc/bootkey/bootkey.conf';
export const PINNED_CA = '/etc/bootkey/ca.pem';
const TRIED_FILE = '/run/bootkey/tried';
const DEFAULT_DEADLINE_S = 60;
const EVENTLOG = '/sys/kernel/security/tpm0/binary_bios_measurements';

/** One `ask.*` file's `[Ask]` section. */
export interface Ask {
  file: string;
  socket: string;
  id: string;
  /** CLOCK_MONOTONIC µs, 0 = none. */
  notAfter: bigint;
  /** The device from `Id=cryptsetup:DEV`, undefined for other questions. */
  device?: string;
}

/** Parses an ask file (INI, `[Ask]` keys). Returns undefined when it has no Socket=. */
export function parseAsk(file: string, text: string): Ask | undefined {
  const kv = new Map<string, string>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) section = line;
    else if (section === '[Ask]' && line.includes('=')) kv.set(line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1));
  }
  const socket = kv.get('Socket');
  if (!socket) return undefined;
  const id = kv.get('Id') ?? '';
  const notAfter = /^\d+$/.test(kv.get('NotAfter') ?? '') ? BigInt(kv.get('NotAfter')!) : 0n;
  const device = id.startsWith('cryptsetup:') ? id.slice('cryptsetup:'.length) : undefined;
  return { file, socket, id, notAfter, device };
}

/** The pending questions in `dir` (expired ones skipped). */
export function listAsks(dir = ASK_DIR): Ask[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith('ask.')).sort();
  } catch {
    return [];
  }
  const now = process.hrtime.bigint() / 1000n; // libuv's hrtime is CLOCK_MONOTONIC, like NotAfter
  const out: Ask[] = [];
  for (const n of names) {
    try {
      const a = parseAsk(`${dir}/${n}`, readFileSync(`${dir}/${n}`, 'utf8'));
      if (a && (a.notAfter === 0n || a.notAfter > now)) out.push(a);
    } catch {
      /* answered and removed meanwhile */
    }
  }
  return out;
}

export interface AgentConfig {
  deadlineS: number;
  tpm?: string;
  eventlog: string;
  disabled: boolean;
}

/**
 * Config: defaults < /etc/bootkey/bootkey.conf (src/config/machine-conf.ts, read leniently: a
 * bad line is skipped) < kernel command line (rd.bootkey.KEY=, same keys and checks).
 */
export function loadConfig(configText = readOr(CONFIG_FILE), cmdline = readOr('/proc/cmdline')): AgentConfig {
  const c: AgentConfig = { deadlineS: DEFAULT_DEADLINE_S, eventlog: EVENTLOG, disabled: false };
  const apply = (s: MachineSettings): void => {
    if (s.deadline !== undefined) c.deadlineS = s.deadline;
    if (s.tpm !== undefined) c.tpm = s.tpm;
    if (s.eventlog !== undefined) c.eventlog = s.eventlog;
    if (s.enabled !== undefined) c.disabled = !s.enabled;
  };
  apply(loadMachineConf(configText, CONFIG_FILE, false).settings);
  const words: string[] = [];
  for (const w of cmdline.trim().split(/\s+/)) {
    const m = /^rd\.bootkey(?:\.([a-z]+))?=(.*)$/.exec(w);
    if (m) words.push(`${m[1] ?? 'enabled'} = ${m[2]}`);
  }
  apply(loadMachineConf(words.join('\n'), '/proc/cmdline', false).settings);
  return c;
}

function readOr(path: string, dflt = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return dflt;
  }
}

/** systemd-reply-password (Debian /lib/systemd, MicroOS /usr/lib/systemd). */
export function replyPasswordPath(): string {
  for (const p of ['/usr/lib/systemd/systemd-reply-password', '/lib/systemd/systemd-reply-password']) if (existsSync(p)) return p;
  return 'systemd-reply-password';
}

/** Sends "+" + key to the ask socket through systemd-reply-password (key on its stdin only). */
export function replyPassword(socket: string, key: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(replyPasswordPath(), ['1', socket], { stdio: ['pipe', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`systemd-reply-password exited ${code}: ${Buffer.concat(err).toString().trim()}`))));
    child.stdin.on('error', () => undefined);
    child.stdin.end(key);
  });
}

/** Milliseconds spent per phase of one unlock (no secrets). */
export interface Phases {
  /** Process start → agent code running. */
  startup: number;
  /** luksDump + token + event log read. */
  token: number;
  /** TPM commands: AK, quote, import/load/unseal, extend. */
  tpm: number;
  /** TCP + TLS 1.3 handshake (including failed attempts and backoff). */
  connect: number;
  /** attest-begin → challenge: one round trip (+ the server's nonce). */
  begin: number;
  /** attest-finish → released: one round trip + the server's verification (quote, replay, policy, wrapping). */
  finish: number;
  /** systemd-reply-password. */
  reply: number;
  total: number;
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** The PEM certificates of a bundle. */
function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** The token's CA must be one of the CAs pinned in the initrd (when the dracut module installed them). */
export function checkPinnedCa(token: BootkeyToken, pinnedPem: string | undefined): void {
  if (!pinnedPem) return;
  const b = new X509Certificate(token.ca);
  if (!pemBlocks(pinnedPem).some((p) => new X509Certificate(p).fingerprint256 === b.fingerprint256)) {
    throw new ClientError('CA_MISMATCH', `the token's server CA (${b.subject.replace(/\n/g, ', ')}) is not the CA pinned in the initrd (${PINNED_CA})`);
  }
}

export interface AgentLog {
  (line: string): void;
}

/**
 * Unlocks one question with `unlock()` (attest → release → unseal → extend the released PCR),
 * handing the key to systemd-cryptsetup's question. Returns the phases.
 * @throws ClientError (REFUSED with failures, UNREACHABLE, EK_MISMATCH, UNSEAL, NO_TOKEN, CA_MISMATCH), TpmError
 */
export async function answer(ask: Ask, cfg: AgentConfig, deadlineAt: number, log: AgentLog, startupMs: number, state: { releasing: boolean } = { releasing: false }): Promise<Phases> {
  const t0 = process.hrtime.bigint();
  const p: Phases = { startup: startupMs, token: 0, tpm: 0, connect: 0, begin: 0, finish: 0, reply: 0, total: 0 };
  const dev = ask.device!;
  const t = process.hrtime.bigint();
  const tok = await readToken(dev);
  checkPinnedCa(tok.token, existsSync(PINNED_CA) ? readOr(PINNED_CA) : undefined);
  const eventLog = readFileSync(cfg.eventlog);
  p.token = ms(t);
  const tpm = await Tpm.open(cfg.tpm);
  // (bench:boot: the unit's start → the first TPM command; the process starts with the unit)
  log(`${dev}: first TPM command at ${performance.now().toFixed(0)} ms after the process start`);
  let attempt = 0;
  try {
    await unlock({
      device: dev, tpm, eventLog, token: tok, deadlineMs: Math.max(1, deadlineAt - Date.now()),
      client: { maxAttempts: 100 },
      log: (l) => {
        if (l.startsWith('attempt')) log(`${dev}: ${l}`);
      },
      notice: (l) => log(`${dev}: ${l}`),
      phase: (name, t) => {
        if (name === 'connect') log(`${dev}: attempt ${++attempt}: connected, attesting (token ${tok.id}, machine ${tok.token.machine})`);
        if (name === 'handoff') p.reply += t;
        else p[name] += t;
      },
      onReleased: () => {
        state.releasing = true; // from here on, finish (unseal, extend) even if the prompt was answered
      },
      beforeConnect: async (servers) => {
        const w = await waitForRoute(servers, deadlineAt);
        if (w > 0) log(`${dev}: waited ${w.toFixed(0)} ms for a route to the server`);
      },
      mode: { handOff: (key) => replyPassword(ask.socket, key) },
    });
    p.total = ms(t0);
    return p;
  } finally {
    await tpm.close().catch(() => undefined);
  }
}

/**
 * Whether the routing tables (/proc/net/route, /proc/net/ipv6_route) hold a route, other than
 * through `lo`, that covers ADDR (an IPv4 or IPv6 literal), or any default route when ADDR is
 * a host name (its DNS needs the network anyway). Pure: the tables' text is passed in.
 */
export function hasRoute(addr: string, route4: string, route6: string): boolean {
  const kind = isIP(addr);
  if (kind !== 6) {
    const ip = kind === 4 ? addr.split('.').reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0) : undefined;
    for (const line of route4.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8 || f[0] === 'lo' || !(Number.parseInt(f[3], 16) & 1)) continue; // RTF_UP
      // Destination and Mask: the network-order address as the kernel prints a u32 (little-endian)
      if (!/^[0-9A-Fa-f]{8}$/.test(f[1]) || !/^[0-9A-Fa-f]{8}$/.test(f[7])) continue;
      const d = Buffer.from(f[1], 'hex').readUInt32LE(0);
      const m = Buffer.from(f[7], 'hex').readUInt32LE(0);
      if (ip === undefined ? m === 0 : ((ip & m) >>> 0) === ((d & m) >>> 0)) return true;
    }
    if (kind === 4) return false;
  }
  const want = kind === 6 ? expand6(addr) : undefined;
  for (const line of route6.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] === 'lo' || !/^[0-9a-f]{32}$/.test(f[0])) continue;
    const plen = Number.parseInt(f[1], 16);
    if (want === undefined) {
      if (plen === 0 && !(Number.parseInt(f[8], 16) & 0x200)) return true; // a default route that is not a reject route
      continue;
    }
    if (f[0].startsWith('fe80') || (Number.parseInt(f[8], 16) & 0x200)) continue;
    const bits = (h: string): string => [...h].map((c) => Number.parseInt(c, 16).toString(2).padStart(4, '0')).join('');
    if (bits(want).slice(0, plen) === bits(f[0]).slice(0, plen)) return true;
  }
  return false;
}

function expand6(a: string): string {
  const [h, t = ''] = a.includes('::') ? a.split('::') : [a, undefined as unknown as string];
  const hs = h ? h.split(':') : [];
  const ts = a.includes('::') && t ? t.split(':') : [];
  const mid = a.includes('::') ? Array(8 - hs.length - ts.length).fill('0') : [];
  return [...hs, ...mid, ...ts].map((x) => x.padStart(4, '0')).join('').toLowerCase();
}

/**
 * Waits (polling every 50 ms) until some server of SERVERS has a route (hasRoute), or until
 * DEADLINEAT (then the connection attempts report the failure). Returns the milliseconds waited.
 * The unit is not ordered after network-online.target: this wait is where the network comes in.
 */
export async function waitForRoute(servers: string[], deadlineAt: number, read = (f: string): string => readOr(f)): Promise<number> {
  const hosts = servers.map((u) => (/^https:\/\/(\[[^\]]+\]|[^:/]+)/.exec(u)?.[1] ?? '').replace(/^\[|\]$/g, ''));
  const t0 = performance.now();
  for (;;) {
    const r4 = read('/proc/net/route');
    const r6 = read('/proc/net/ipv6_route');
    if (hosts.some((h) => LOCAL_HOSTS.has(h) || hasRoute(h, r4, r6))) return performance.now() - t0;
    if (Date.now() >= deadlineAt) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether DEV carries a bootkey token (false for non-LUKS2 or unreadable devices). */
async function hasToken(dev: string): Promise<boolean> {
  try {
    await readToken(dev);
    return true;
  } catch {
    return false;
  }
}

function tried(file: string): Set<string> {
  return new Set(readOr(file).split('\n').filter(Boolean));
}

function markTried(file: string, dev: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    appendFileSync(file, dev + '\n');
  } catch {
    /* /run not writable (tests): the in-process set still holds */
  }
}

export interface AgentOptions {
  dir?: string;
  log?: AgentLog;
  config?: AgentConfig;
  /** Process start-up before main ran, ms. */
  startupMs?: number;
  /** Devices already tried in this boot (default /run/bootkey/tried). */
  triedFile?: string;
  /**
   * Started early (sysinit.target, before any question): wait for the first question for a
   * bootkey volume until the deadline instead of leaving when there is none yet, so the
   * process start-up is done when cryptsetup asks.
   */
  waitFirst?: boolean;
}

/** The agent loop (module doc). Resolves with the number of questions answered. */
export async function runAgent(o: AgentOptions = {}): Promise<number> {
  const dir = o.dir ?? ASK_DIR;
  const log = o.log ?? ((l: string) => process.stdout.write(`bootkey: ${l}\n`));
  const cfg = o.config ?? loadConfig();
  if (cfg.disabled) {
    log('disabled (rd.bootkey=0)');
    return 0;
  }
  // (--wait-first: the deadline bounds the wait for the first question, and starts again with it)
  let deadlineAt = Date.now() + cfg.deadlineS * 1000;
  const triedFile = o.triedFile ?? TRIED_FILE;
  const done = tried(triedFile);
  const checked = new Map<string, boolean>();
  const inFlight = new Map<string, { ask: Ask; releasing: boolean }>();
  let answered = 0;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  let startedAny = false;
  try {
    for (;;) {
      if (!watcher) {
        try {
          watcher = watch(dir, () => wake?.());
        } catch {
          /* no directory yet (the path unit makes it): poll */
        }
      }
      const asks = listAsks(dir);
      // the user answered (or cryptsetup gave up) while we were working: step aside
      for (const [dev, f] of inFlight) {
        if (!asks.some((a) => a.file === f.ask.file) && !f.releasing) {
          log(`${dev}: answered elsewhere (passphrase prompt); stepping aside`);
          inFlight.delete(dev);
        }
      }
      for (const a of asks) {
        if (!a.device || done.has(a.device) || inFlight.has(a.device)) continue;
        if (!checked.has(a.device)) checked.set(a.device, await hasToken(a.device));
        if (!checked.get(a.device)) continue;
        const dev = a.device;
        if (o.waitFirst && !startedAny) deadlineAt = Date.now() + cfg.deadlineS * 1000;
        startedAny = true;
        done.add(dev);
        markTried(triedFile, dev);
        const entry = { ask: a, releasing: false };
        inFlight.set(dev, entry);
        log(`${dev}: unlocking with a key-release server (deadline ${cfg.deadlineS} s; the passphrase prompt stays available)`);
        answer(a, cfg, deadlineAt, log, o.startupMs ?? 0, entry).then(
          (p) => {
            answered++;
            log(`${dev}: key handed to systemd-cryptsetup in ${(p.total / 1000).toFixed(2)} s`);
            log(`${dev}: phases ms: startup=${p.startup.toFixed(0)} token=${p.token.toFixed(0)} tpm=${p.tpm.toFixed(0)} connect=${p.connect.toFixed(0)} begin=${p.begin.toFixed(0)} finish=${p.finish.toFixed(0)} reply=${p.reply.toFixed(0)}`);
          },
          (e: unknown) => {
            if (e instanceof ClientError && e.code === 'REFUSED') {
              log(`${dev}: REFUSED by ${e.server}: ${e.message.replace(/\s*\n\s*/g, '; ')}${e.failures?.length ? ` (${e.failures.join('; ')})` : ''}; use the passphrase prompt`);
            } else if (e instanceof ClientError && e.code === 'UNREACHABLE') {
              log(`${dev}: no key-release server reachable within ${cfg.deadlineS} s; use the passphrase prompt`);
            } else {
              const err = e as Error & { code?: string };
              log(`${dev}: failed${err.code ? ` (${err.code})` : ''}: ${String(err.message ?? e).replace(/\s*\n\s*/g, '; ')}; use the passphrase prompt`);
            }
          },
        ).finally(() => {
          inFlight.delete(dev);
          wake?.();
        });
      }
      if (inFlight.size === 0 && !(o.waitFirst && !startedAny && Date.now() < deadlineAt)) {
        // nothing running: leave unless an unseen bootkey question may still come (the
        // .path unit starts us again on the next change of the directory)
        return answered;
      }
      const waitingFirst = inFlight.size === 0; // (--wait-first): nothing else keeps the process alive
      await new Promise<void>((r) => {
        wake = r;
        const tm = setTimeout(r, watcher ? 500 : 100);
        if (!waitingFirst) tm.unref();
      });
      wake = undefined;
    }
  } finally {
    watcher?.close();
  }
}

/** The `initrd-agent` command line: [--wait-first] [--dir DIR] [--deadline S] [--tpm SPEC] [--eventlog F]. */
export async function agentMain(argv: string[], startupMs: number): Promise<number> {
  const cfg = loadConfig();
  let dir: string | undefined;
  let waitFirst = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--dir' && v) dir = argv[++i];
    else if (a === '--deadline' && v && Number(v) > 0) cfg.deadlineS = Number(argv[++i]);
    else if (a === '--tpm' && v) cfg.tpm = argv[++i];
    else if (a === '--eventlog' && v) cfg.eventlog = argv[++i];
    else if (a === '--wait-first') waitFirst = true;
    else {
      process.stderr.write('usage: bootkey initrd-agent [--wait-first] [--dir DIR] [--deadline S] [--tpm SPEC] [--eventlog FILE]\n');
      return 2;
    }
  }
  await runAgent({ dir, config: cfg, startupMs, waitFirst });
  return 0;
}

const LOCAL_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * `bootkey initrd-info [--ca-out FILE] DEV...`, for the dracut module at build time: one line per
 * device with a bootkey token (`DEV token=N machine=M servers=U,U remote=yes|no`), the tokens'
 * CAs (deduplicated) into FILE. Exit 0 when a token was found, 1 otherwise. No secrets.
 */
export async function infoMain(argv: string[]): Promise<number> {
  let caOut: string | undefined;
  const devs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ca-out' && argv[i + 1]) caOut = argv[++i];
    else devs.push(argv[i]);
  }
  const cas = new Map<string, string>();
  let found = 0;
  for (const dev of devs) {
    let t: { id: number; token: BootkeyToken };
    try {
      t = await readToken(dev);
    } catch {
      continue;
    }
    found++;
    const remote = t.token.servers.some((u) => {
      const m = /^https:\/\/(\[[^\]]+\]|[^:/]+)/.exec(u);
      return !LOCAL_HOSTS.has((m?.[1] ?? '').replace(/^\[|\]$/g, ''));
    });
    const c = new X509Certificate(t.token.ca);
    cas.set(c.fingerprint256, c.toString());
    process.stdout.write(`${dev} token=${t.id} machine=${t.token.machine} servers=${t.token.servers.join(',')} remote=${remote ? 'yes' : 'no'}\n`);
  }
  if (caOut && cas.size) writeFileSync(caOut, [...cas.values()].join(''), { mode: 0o644 });
  return found ? 0 : 1;
}
