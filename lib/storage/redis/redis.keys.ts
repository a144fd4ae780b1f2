/*
 * The Redis key layout, in one place (docs/storage-drivers.md). Every key starts with the driver's
 * `keyPrefix` as a hash tag: `{myapp:state:}item:…`, so that every key of a store is in one hash
 * slot and a commit's script runs on a Redis Cluster too. A prefix that already holds a hash tag
 * (`'{myapp}:state:'`) is used as it is. Below, <prefix> is that tagged prefix. A collection name is percent-encoded (so it holds no `:`); an id comes last and raw,
 * so the layout stays unambiguous whatever the id holds.
 *
 *   <prefix>item:<collection>:<id>     hash { data: bytes, rev: commit revision, by: replica id }
 *   <prefix>index:<collection>         set of the collection's ids (loadAll reads it: no KEYS/SCAN)
 *   <prefix>revision                   counter: INCR once per commit that applies something
 *   <prefix>changes                    pub/sub channel: one JSON notice per commit
 *   <prefix>lease:<name>               the lease: "<token>:<holder nonce>", with a PX expiry
 *   <prefix>fence:<name>               counter of the lease's fencing tokens (never removed)
 *   <prefix>quarantine                 set of the names of the copies below
 *   <prefix>quarantine:<sha1>:<key>    a copy (DUMP/RESTORE) of a bad value, <key> without prefix
 */

const encode = (part: string): string => encodeURIComponent(part);

/**
 * True when `prefix` holds a hash tag: a `{` followed, later, by a `}` with something between. Redis
 * (and Redis Cluster) hashes only that part of a key, so every key that starts with `prefix` is in
 * one slot.
 */
export function hasHashTag(prefix: string): boolean {
  const open = prefix.indexOf('{');
  return open >= 0 && prefix.indexOf('}', open + 1) > open + 1;
}

/** Why `keyPrefix` cannot be put in a hash tag, if it cannot: braces that are not one. */
export function keyPrefixProblem(prefix: string): string | undefined {
  if (hasHashTag(prefix) || !/[{}]/.test(prefix)) return undefined;
  return 'its braces are not a hash tag';
}

/** Builds the keys of one driver (one prefix). */
export class RedisKeys {
  /** The prefix every key starts with: `keyPrefix` in a hash tag (or as given, if it has one). */
  readonly prefix: string;

  constructor(keyPrefix: string) {
    this.prefix = hasHashTag(keyPrefix) ? keyPrefix : `{${keyPrefix}}`;
  }

  item(collection: string, id: string): string {
    return `${this.prefix}item:${encode(collection)}:${id}`;
  }

  index(collection: string): string {
    return `${this.prefix}index:${encode(collection)}`;
  }

  get revision(): string {
    return `${this.prefix}revision`;
  }

  get channel(): string {
    return `${this.prefix}changes`;
  }

  lease(name: string): string {
    return `${this.prefix}lease:${encode(name)}`;
  }

  fence(name: string): string {
    return `${this.prefix}fence:${encode(name)}`;
  }

  get quarantine(): string {
    return `${this.prefix}quarantine`;
  }

  /** Prefix of the quarantine copies; the script adds `<sha1>:<key without prefix>`. */
  get quarantinePrefix(): string {
    return `${this.prefix}quarantine:`;
  }

  /** `key` without the prefix, for names and messages. */
  strip(key: string): string {
    return key.startsWith(this.prefix) ? key.slice(this.prefix.length) : key;
  }
}
