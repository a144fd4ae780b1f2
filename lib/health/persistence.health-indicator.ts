import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { lastLoadFailed, lastSaveIncomplete, unresolvedItems } from '../persistence.messages';
import { PersistenceStore } from '../store/persistence.store';
import { PersistenceHealthOptions } from './persistence-health-options.interface';

const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;

/**
 * A `@nestjs/terminus` health indicator for the store. Up when the store can save now (open, not
 * read-only, its folder writable), no error came after the last successful save, the last save was
 * complete, no stored item waits unloaded for someone to act (`getStatus().unresolved`), the last
 * load did not fail, the disk has `minFreeBytes` free, and (with `maxAge`) the last save is recent
 * enough. Either way it reports the
 * last save and its age, the last error, the journal not yet checkpointed and the free space.
 *
 * Import it from `nestjs-persistence/health`; provide it in a module that can inject
 * `PersistenceStore` and imports `TerminusModule`.
 *
 * @example
 * ```ts
 * @Get('health')
 * @HealthCheck()
 * check() {
 *   return this.health.check([
 *     () => this.persistence.isHealthy('persistence', { maxAge: 15 * 60_000 }),
 *   ]);
 * }
 * ```
 */
@Injectable()
export class PersistenceHealthIndicator {
  constructor(
    private readonly store: PersistenceStore,
    private readonly indicator: HealthIndicatorService,
  ) {}

  async isHealthy<const Key extends string = 'persistence'>(
    key: Key = 'persistence' as Key,
    options: PersistenceHealthOptions = {},
  ) {
    const minFreeBytes = options.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES;
    const status = await this.store.getStatus();
    const now = Date.now();
    const lastSave = status.lastSaveTime;
    const since = lastSave ?? status.startedAt;
    const problems: string[] = [];
    if (!status.writable) {
      problems.push(`cannot save: ${status.notWritableReason ?? 'unknown'}`);
    }
    if (status.lastError && status.errorSinceLastSave) {
      problems.push(
        `the last error (${status.lastError.code} during ${status.lastError.operation}) came after the last successful save`,
      );
    }
    if (status.lastSaveIncomplete !== null) {
      problems.push(lastSaveIncomplete(status.lastSaveIncomplete));
    }
    if (status.unresolved.items > 0) {
      const kinds = Object.entries(status.unresolved.kinds)
        .map(([kind, n]) => `${kind}: ${n}`)
        .join(', ');
      problems.push(unresolvedItems(status.unresolved.items, kinds));
    }
    if (status.loadFailure !== null) {
      problems.push(lastLoadFailed(status.loadFailure));
    }
    if (status.storage === 'driver') {
      // No folder: the storage's own space is the driver's to watch (the server's monitoring).
    } else if (status.disk === null) {
      problems.push('the free space of the store folder could not be measured');
    } else if (status.disk.available < minFreeBytes) {
      problems.push(
        `${status.disk.available} bytes free, below the minimum of ${minFreeBytes} bytes`,
      );
    }
    if (options.maxAge !== undefined && since !== null && now - since.getTime() > options.maxAge) {
      problems.push(
        lastSave
          ? `the last save is ${now - lastSave.getTime()} ms old, more than maxAge (${options.maxAge} ms)`
          : `no save since the store opened ${now - since.getTime()} ms ago, more than maxAge (${options.maxAge} ms)`,
      );
    }
    const details = {
      path: status.path,
      writable: status.writable,
      readOnly: status.readOnly,
      lastSave: lastSave?.toISOString() ?? null,
      lastSaveAgeMs: lastSave ? now - lastSave.getTime() : null,
      lastError: status.lastError && {
        code: status.lastError.code,
        message: status.lastError.message,
        operation: status.lastError.operation,
        at: status.lastError.timestamp.toISOString(),
      },
      unresolved: status.unresolved,
      lastSaveIncomplete: status.lastSaveIncomplete,
      journal: status.journal,
      disk: status.disk && {
        freeBytes: status.disk.available,
        totalBytes: status.disk.total,
        minFreeBytes,
      },
    };
    const session = this.indicator.check(key);
    return problems.length === 0 ? session.up(details) : session.down({ ...details, problems });
  }
}
