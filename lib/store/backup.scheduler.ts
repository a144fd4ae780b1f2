import type { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob } from 'cron';
import { PersistenceLogger } from '../events/persistence.logger';
import { PERSISTENCE_BACKUP_CRON } from '../persistence.constants';

/**
 * The scheduled backup: a `CronJob` kept in the store's `SchedulerRegistry` under
 * {@link PERSISTENCE_BACKUP_CRON}. A tick that comes while the previous scheduled backup still runs
 * is skipped; `run` reports its own failures, so a tick never throws.
 */
export class BackupScheduler {
  private job?: CronJob;
  private running = false;

  constructor(
    private readonly registry: SchedulerRegistry,
    private readonly cron: string,
    private readonly run: () => Promise<unknown>,
    private readonly logger: PersistenceLogger,
  ) {}

  start(): void {
    this.stop();
    const job = CronJob.from({ cronTime: this.cron, onTick: () => this.tick(), start: false });
    this.registry.addCronJob(PERSISTENCE_BACKUP_CRON, job);
    this.job = job;
    job.start();
  }

  stop(): void {
    const job = this.job;
    if (!job) return;
    this.job = undefined;
    void job.stop();
    // The registry's own shutdown may already have removed it.
    if (
      this.registry.doesExist('cron', PERSISTENCE_BACKUP_CRON) &&
      this.registry.getCronJob(PERSISTENCE_BACKUP_CRON) === job
    ) {
      this.registry.deleteCronJob(PERSISTENCE_BACKUP_CRON);
    }
  }

  /** One tick: starts a backup unless the last one is still running. */
  tick(): void {
    if (this.running) {
      this.logger.debug('Scheduled backup skipped: the previous one is still running.');
      return;
    }
    this.running = true;
    this.run()
      .catch(() => undefined) // reported by the store as persistence.error (operation 'backup')
      .finally(() => {
        this.running = false;
      });
  }
}
