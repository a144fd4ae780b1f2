import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { ioFailed, lockLost, lockUnconfirmed, reasonOf } from '../persistence.messages';
import { errorCode } from './file-system.interface';

/** How often the owner renews its lock, and how long an unrenewed lock of another host stays its. */
export interface LockTiming {
  leaseMs: number;
  renewMs: number;
}

/** Who a lock record names (see `LockOwner` in store.lock.ts). */
export interface LeaseHolder {
  pid: number;
  host: string;
  since: string;
}

/** What one renewal found. */
export type RenewOutcome =
  | { kind: 'renewed' }
  /** `.lock` names someone else, or nobody: the store is no longer ours. */
  | { kind: 'lost'; owner: LeaseHolder | undefined }
  /** Another process holds the claim on our record (it is taking it over): not confirmed. */
  | { kind: 'busy' };

/**
 * The owner's side of the lock's lease: renews the record every `renewMs` (a timer that never keeps
 * the process alive), and tells the store whether it may still write.
 *
 * The rule that makes the lease safe without trusting any clock but this process's monotonic one: a
 * waiter on another host takes the lock over only after seeing the record unchanged for a whole
 * lease, measured on its own clock from its first look. A renewal that starts at `t` and succeeds
 * changes the record no earlier than `t`, so no waiter can take over before `t + leaseMs`: until
 * then this process may write. Past it without a confirmed renewal, a write first renews; while that
 * fails it is refused (`PERSISTENCE_IO_FAILED` when the renewal's I/O failed, else
 * `PERSISTENCE_LOCK_LOST`: another process holds the claim on our record). A renewal that finds another record in `.lock` means
 * the lock was taken over (or deleted): every later write is refused, and `onLost` is called once.
 */
export class LockLease {
  private timer?: NodeJS.Timeout;
  private renewing?: Promise<void>;
  /** `performance.now()` at the start of the last confirmed renewal (or of the acquire). */
  private confirmedAt: number;
  private lost?: PersistenceError;
  /** Why the last renewal failed, when it threw (an I/O error): what an unconfirmed write reports. */
  private failure?: unknown;

  constructor(
    private readonly path: string,
    private readonly timing: LockTiming,
    private readonly renew: () => Promise<RenewOutcome>,
    private readonly onLost: (error: PersistenceError) => void,
    acquiredAt: number,
  ) {
    this.confirmedAt = acquiredAt;
    this.timer = setInterval(() => void this.renewNow(), timing.renewMs);
    this.timer.unref();
  }

  /** Why the store may not write now (the lock was lost), or undefined. */
  get lostError(): PersistenceError | undefined {
    return this.lost;
  }

  /**
   * `undefined` while the lease is surely this process's (no waiting, no I/O); otherwise a promise
   * that renews first and rejects with `PERSISTENCE_LOCK_LOST` when the lock is lost or cannot be
   * confirmed.
   */
  writable(): Promise<void> | undefined {
    if (this.lost) return Promise.reject(this.lost);
    if (!this.expired()) return undefined;
    return this.confirm().then(() => {
      if (this.lost) throw this.lost;
      if (!this.expired()) return;
      // The folder is gone (the renewal could not create its file): nobody holds a lock in it. The
      // store's own check refuses that write and recreates the folder, with a new lock.
      if (errorCode(this.failure) === 'ENOENT') return;
      if (this.failure !== undefined) {
        throw new PersistenceError(
          PersistenceErrorCode.IoFailed,
          ioFailed('renew the lock of', this.path, reasonOf(this.failure)),
          { path: this.path, cause: this.failure },
        );
      }
      throw new PersistenceError(
        PersistenceErrorCode.LockLost,
        lockUnconfirmed(this.path, this.timing.leaseMs),
        { path: this.path },
      );
    });
  }

  /** Stops renewing, after the renewal in flight (if any) has finished. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.renewing;
  }

  private expired(): boolean {
    return performance.now() - this.confirmedAt >= this.timing.leaseMs;
  }

  /**
   * Renews for a write: after the renewal in flight (it may have started long ago, e.g. before the
   * event loop was blocked), a new one when the lease is still not confirmed.
   */
  private async confirm(): Promise<void> {
    await this.renewNow();
    if (!this.lost && this.expired()) await this.renewNow();
  }

  /** One renewal at a time: a tick or a write that comes while one runs waits for that one. */
  private renewNow(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    if (this.lost || !this.timer) return;
    const started = performance.now();
    let outcome: RenewOutcome;
    try {
      outcome = await this.renew();
      this.failure = undefined;
    } catch (error) {
      this.failure = error;
      return; // not confirmed: the next tick tries again, and writes stop once a lease passes
    }
    if (outcome.kind === 'renewed') {
      this.confirmedAt = started;
    } else if (outcome.kind === 'lost') {
      this.lost = new PersistenceError(
        PersistenceErrorCode.LockLost,
        lockLost(this.path, outcome.owner),
        { path: this.path },
      );
      clearInterval(this.timer);
      this.timer = undefined;
      this.onLost(this.lost);
    }
  }
}
