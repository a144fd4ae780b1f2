/*
 * The Redis key layout, in one place (docs/storage-drivers.md). Every key starts with the driver's
 * `keyPrefix`. A collection name is percent-encoded (so it holds no `:`); an id comes last and raw,
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

/** Builds the keys of one driver (one prefix). */
export class RedisKeys {
  constructor(readonly prefix: string) {}

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
