import { Logger } from '@nestjs/common';
import type { SchedulerRegistry } from '@nestjs/schedule';
import {
  PERSISTENCE_AUTO_SAVE_INTERVAL,
  PERSISTENCE_LOGGER_CONTEXT,
} from '../persistence.constants';

/**
 * The auto-save interval, kept in the application's `SchedulerRegistry` under
 * {@link PERSISTENCE_AUTO_SAVE_INTERVAL}. A tick is skipped while the store is busy; after failures,
 * ticks are skipped in a growing number (0, 1, 3, 7, … up to `maxBackoffTicks`) until a save succeeds.
 */
export class AutoSaveScheduler {
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private failures = 0;
  private skip = 0;
  private intervalMs: number | undefined;

  constructor(
    private readonly registry: SchedulerRegistry,
    private readonly isBusy: () => boolean,
    private readonly save: () => Promise<unknown>,
    private readonly maxBackoffTicks: number,
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

  stop(): void {
    // The registry's own shutdown may already have removed it.
    if (this.registry.doesExist('interval', PERSISTENCE_AUTO_SAVE_INTERVAL)) {
      this.registry.deleteInterval(PERSISTENCE_AUTO_SAVE_INTERVAL);
    }
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
