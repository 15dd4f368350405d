/**
 * The one configuration file format of bootkey (`/etc/bootkey/server.conf`,
 * `/etc/bootkey/bootkey.conf`): UTF-8 text, one `key = value` per line.
 *
 *  - Blank lines and lines whose first non-blank character is `#` or `;` are comments. There
 *    are no trailing comments: everything after the first `=` is the value (trimmed), so a
 *    value may contain `#` (a PostgreSQL password, a URL fragment).
 *  - Keys are lower case letters, digits and `-`, exactly the names of the command-line
 *    flags (`listen`, `max-connections`, ...). A key given twice is an error.
 *  - A value may be wrapped in double quotes to keep leading or trailing blanks.
 *  - No sections, no includes, no variable expansion.
 *
 * Pure: the caller reads the file (bounded by MAX_CONF_BYTES). Errors name the file, the line
 * and the key. Used by the server (src/config/server-conf.ts) and the initrd agent
 * (src/initrd/agent.ts, leniently: a bad line there is skipped, never fatal at boot).
 * @module
 */
import { BootkeyError } from '../errors.ts';

/** A configuration file larger than this is refused (it is a few lines). */
export const MAX_CONF_BYTES = 64 * 1024;

export class ConfigError extends BootkeyError {
  readonly layer = 'config';
  /** The key at fault, when there is one. */
  readonly key?: string;
  /** 1-based line number in the file, when there is one. */
  readonly line?: number;
  constructor(message: string, o: { key?: string; line?: number } = {}) {
    super('CONFIG', message);
    if (o.key !== undefined) this.key = o.key;
    if (o.line !== undefined) this.line = o.line;
  }
}

export interface ConfEntry {
  key: string;
  value: string;
  /** 1-based line number. */
  line: number;
}

/** Parses `key = value` lines; throws ConfigError naming `file:line` on a malformed line or a repeated key. */
export function parseConf(text: string, file: string): Map<string, ConfEntry> {
  if (Buffer.byteLength(text, 'utf8') > MAX_CONF_BYTES) throw new ConfigError(`${file}: larger than ${MAX_CONF_BYTES} bytes: not a bootkey configuration file`);
  const out = new Map<string, ConfEntry>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, '');
    const t = raw.trim();
    if (t === '' || t.startsWith('#') || t.startsWith(';')) continue;
    const line = i + 1;
    if (/^\[.*\]$/.test(t)) throw new ConfigError(`${file}:${line}: sections ("${t}") are not part of this format: write key = value lines only`, { line });
    const eq = t.indexOf('=');
    if (eq < 0) throw new ConfigError(`${file}:${line}: expected "key = value", got "${t.slice(0, 80)}"`, { line });
    const key = t.slice(0, eq).trim();
    if (!/^[a-z][a-z0-9-]{0,63}$/.test(key)) throw new ConfigError(`${file}:${line}: "${key.slice(0, 80)}" is not a key (lower case letters, digits and -)`, { key, line });
    let value = t.slice(eq + 1).trim();
    if (value.startsWith('"')) {
      if (value.length < 2 || !value.endsWith('"')) throw new ConfigError(`${file}:${line}: key "${key}": unterminated quoted value`, { key, line });
      value = value.slice(1, -1);
    }
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(value)) throw new ConfigError(`${file}:${line}: key "${key}": control character in the value`, { key, line });
    const prev = out.get(key);
    if (prev) throw new ConfigError(`${file}:${line}: key "${key}" is already set on line ${prev.line}`, { key, line });
    out.set(key, { key, value, line });
  }
  return out;
}

/** How one key's value is read: returns the parsed value or throws an Error whose message says what was expected. */
export type KeyParser<T> = (v: string) => T;

export interface KeySpec<T = unknown> {
  parse: KeyParser<T>;
  /** One line for the documentation and --help. */
  doc: string;
  /** A valid value for the example file (the default when there is one). */
  example?: string;
}

/** Checks every entry against `schema` (own keys only); names the key and line of the first problem. */
export function validateConf<S extends Record<string, KeySpec>>(entries: Map<string, ConfEntry>, schema: S, file: string, extraHint: (key: string) => string = () => ''):
  { [K in keyof S]?: ReturnType<S[K]['parse']> } {
  const out: Record<string, unknown> = {};
  for (const e of entries.values()) {
    if (!Object.hasOwn(schema, e.key)) {
      throw new ConfigError(`${file}:${e.line}: unknown key "${e.key}"${extraHint(e.key)} (known: ${Object.keys(schema).join(', ')})`, { key: e.key, line: e.line });
    }
    try {
      out[e.key] = schema[e.key].parse(e.value);
    } catch (err) {
      throw new ConfigError(`${file}:${e.line}: key "${e.key}": ${(err as Error).message}`, { key: e.key, line: e.line });
    }
  }
  return out as { [K in keyof S]?: ReturnType<S[K]['parse']> };
}

// ---------- value parsers ----------

export function intIn(min: number, max: number): KeyParser<number> {
  return (v) => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`expected an integer in ${min}..${max}, got "${v.slice(0, 40)}"`);
    return Number(v);
  };
}

export function numberIn(min: number, max: number): KeyParser<number> {
  return (v) => {
    if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`expected a number in ${min}..${max}, got "${v.slice(0, 40)}"`);
    return Number(v);
  };
}

export const nonEmpty: KeyParser<string> = (v) => {
  if (v === '') throw new Error('empty value');
  return v;
};

export const bool: KeyParser<boolean> = (v) => {
  if (/^(1|yes|true|on)$/i.test(v)) return true;
  if (/^(0|no|false|off)$/i.test(v)) return false;
  throw new Error(`expected yes or no, got "${v.slice(0, 40)}"`);
};

/** A comma- or blank-separated list of non-empty words. */
export const list: KeyParser<string[]> = (v) => {
  const xs = v.split(/[\s,]+/).filter(Boolean);
  if (!xs.length) throw new Error('empty list');
  return xs;
};
