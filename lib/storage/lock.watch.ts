import type { LockFile } from './lock.file';

/** A lock or claim file: missing (`undefined`), or its bytes' hash and owner. */
type Read = (path: string) => Promise<LockFile | undefined>;
/** The claim files of the folder now: name → hash of their bytes. */
type ListClaims = () => Promise<Map<string, string>>;

/**
 * How a waiter decides that a lock or claim of another host is stale without trusting that host's
 * clock: it watches the file's bytes on its own monotonic clock, and only a file whose bytes stayed
 * the same for a whole lease (its owner renews well within one) is stale. Any change means a live
 * owner (or a new one). While it watches `.lock`, it also samples the claim files: one present with
 * the same bytes at every look for the whole lease belongs to a contender that died mid take-over
 * (a live one holds a claim for a few file operations), so it can be removed without a second wait.
 */
export class LockWatch {
  /** `name\nid` of claim files seen unchanged for a whole lease. */
  private readonly staleClaims = new Set<string>();

  constructor(
    private readonly read: Read,
    private readonly listClaims: ListClaims,
    private readonly pollMs: number,
  ) {}

  /** True when the claim `name` with the bytes `id` was seen unchanged for a whole lease. */
  isStaleClaim(name: string, id: string): boolean {
    return this.staleClaims.has(`${name}\n${id}`);
  }

  /**
   * Resolves `'unchanged'` once `file` (at `path`) kept its bytes for `leaseMs`, or what `path` holds
   * as soon as that changes (`undefined`: removed). `withClaims`: samples the claim files too.
   */
  async unchangedFor(
    path: string,
    file: LockFile,
    leaseMs: number,
    withClaims: boolean,
  ): Promise<'unchanged' | { now: LockFile | undefined }> {
    const started = performance.now();
    const none = (): Map<string, string> => new Map();
    const steady = withClaims ? await this.listClaims().catch(none) : none();
    for (;;) {
      const left = leaseMs - (performance.now() - started);
      if (left <= 0) break;
      await pause(Math.min(this.pollMs, left));
      const now = await this.read(path);
      if (now?.id !== file.id) return { now };
      if (steady.size > 0) {
        const claims = await this.listClaims().catch(none);
        for (const [name, id] of steady) if (claims.get(name) !== id) steady.delete(name);
      }
    }
    for (const [name, id] of steady) this.staleClaims.add(`${name}\n${id}`);
    return 'unchanged';
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
