import type { SchedulerRegistry } from '@nestjs/schedule';
import { merge, type Observable, type Subscription } from 'rxjs';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { ResolvedPersistenceOptions } from '../interfaces/persistence-module-options.interface';
import {
  PERSISTENCE_AUTO_SAVE_DEBOUNCE,
  PERSISTENCE_AUTO_SAVE_INTERVAL,
} from '../persistence.constants';
import { PersistenceLogger } from '../events/persistence.logger';

/**
 * The auto-save interval, kept in the application's `SchedulerRegistry` under
 * {@link PERSISTENCE_AUTO_SAVE_INTERVAL}. A tick is skipped while the store is busy; after failures,
 * ticks are skipped in a growing number (0, 1, 3, 7, … up to `maxBackoffTicks`) until a save succeeds.
 *
 * With `debounce`, also a save soon after a change: the first change notice schedules a timeout
 * ({@link PERSISTENCE_AUTO_SAVE_DEBOUNCE} in the registry) `debounce` ms later; notices that come
 * before it fires ride along. The save goes through the store's queue, shared with a `saveAll()`
 * already waiting, so saves never overlap. After failures the delay doubles, up to the interval.
 */
export class AutoSaveScheduler {
  private failures = 0;
  private skip = 0;
  private intervalMs: number | undefined;
  private debounceMs: number | false = false;
  private subscription?: Subscription;

  constructor(
    private readonly registry: SchedulerRegistry,
    private readonly isBusy: () => boolean,
    private readonly save: () => Promise<unknown>,
    private readonly maxBackoffTicks: number,
    /** A save shared with any already waiting in the queue (the debounced save). */
    private readonly saveSoon: () => Promise<unknown> = save,
    private readonly logger: PersistenceLogger = new PersistenceLogger(),
  ) {}

  get enabled(): boolean {
    return this.registry.doesExist('interval', PERSISTENCE_AUTO_SAVE_INTERVAL);
  }

  get interval(): number | undefined {
    return this.enabled ? this.intervalMs : undefined;
  }

  start(intervalMs: number): void {
    this.stop();
    this.intervalMs = intervalMs;
    this.failures = 0;
    this.skip = 0;
    const handle = setInterval(() => this.tick(), intervalMs);
    handle.unref?.();
    this.registry.addInterval(PERSISTENCE_AUTO_SAVE_INTERVAL, handle);
  }

  /** Saves `debounceMs` after the first of a burst of `changes`. */
  startDebounce(debounceMs: number, changes: Observable<unknown>): void {
    this.stopDebounce();
    this.debounceMs = debounceMs;
    this.subscription = changes.subscribe(() => this.changed());
  }

  stop(): void {
    // The registry's own shutdown may already have removed it.
    if (this.registry.doesExist('interval', PERSISTENCE_AUTO_SAVE_INTERVAL)) {
      this.registry.deleteInterval(PERSISTENCE_AUTO_SAVE_INTERVAL);
    }
    this.stopDebounce();
  }

  private stopDebounce(): void {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.debounceMs = false;
    this.clearTimeout();
  }

  private clearTimeout(): void {
    if (this.registry.doesExist('timeout', PERSISTENCE_AUTO_SAVE_DEBOUNCE)) {
      this.registry.deleteTimeout(PERSISTENCE_AUTO_SAVE_DEBOUNCE);
    }
  }

  /** A change: schedules the debounced save unless one is already scheduled. */
  private changed(): void {
    if (this.debounceMs === false) return;
    if (this.registry.doesExist('timeout', PERSISTENCE_AUTO_SAVE_DEBOUNCE)) return;
    const delay =
      this.failures === 0
        ? this.debounceMs
        : Math.min(
            this.debounceMs * 2 ** this.failures,
            Math.max(this.intervalMs ?? 0, this.debounceMs),
          );
    const handle = setTimeout(() => {
      this.clearTimeout();
      this.saveSoon().then(
        () => {
          this.failures = 0;
        },
        () => {
          // The store already emitted persistence.error for this failure.
          this.failures++;
        },
      );
    }, delay);
    handle.unref?.();
    this.registry.addTimeout(PERSISTENCE_AUTO_SAVE_DEBOUNCE, handle);
  }

  /** One tick; never throws, never overlaps a running save. */
  tick(): void {
    if (this.skip > 0) {
      this.skip--;
      return;
    }
    if (this.isBusy()) {
      this.logger.debug('Auto-save skipped: a store operation is still running.');
      return;
    }
    this.save().then(
      () => {
        this.failures = 0;
      },
      () => {
        // The store already emitted persistence.error for this failure.
        this.failures++;
        this.skip = Math.min(2 ** (this.failures - 1) - 1, this.maxBackoffTicks);
      },
    );
  }
}

/** What auto-save runs through the store's queue. */
export interface AutoSaveRuns {
  isBusy(): boolean;
  /** A save after those queued (the interval's tick). */
  save(): Promise<unknown>;
  /** A save shared with one already waiting (the debounce). */
  saveSoon(): Promise<unknown>;
  /** The store's logger. */
  logger: PersistenceLogger;
}

/**
 * The store's auto-save. Items that could not be saved were reported; the rest was committed: not
 * a failure of the store, so auto-save keeps its schedule (no back-off on `SAVE_INCOMPLETE`).
 */
export function createAutoSave(
  registry: SchedulerRegistry,
  options: ResolvedPersistenceOptions['autoSave'],
  runs: AutoSaveRuns,
): AutoSaveScheduler {
  const incompleteIsDone = (error: unknown): undefined => {
    if (error instanceof PersistenceError && error.code === PersistenceErrorCode.SaveIncomplete) {
      return undefined;
    }
    throw error;
  };
  return new AutoSaveScheduler(
    registry,
    () => runs.isBusy(),
    () => runs.save().catch(incompleteIsDone),
    options === false ? 8 : options.maxBackoffTicks,
    () => runs.saveSoon().catch(incompleteIsDone),
    runs.logger,
  );
}

/** With `autoSave.debounce`: a save soon after any adapter reports a change (`changes$`). */
export function startAutoSaveDebounce(
  autoSave: AutoSaveScheduler,
  options: ResolvedPersistenceOptions['autoSave'],
  adapters: readonly PersistenceAdapter[],
): void {
  const debounce = options === false ? false : options.debounce;
  if (debounce === false) return;
  const streams = adapters.flatMap((adapter) => (adapter.changes$ ? [adapter.changes$] : []));
  autoSave.startDebounce(debounce, merge(...streams));
}
