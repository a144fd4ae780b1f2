import type { Logger } from '@nestjs/common';
import type { Notification, Pool, PoolClient } from 'pg';
import type { WatchedChange } from '../../interfaces/storage-driver.interface';
import { checkOut } from './postgres.client';
import { NoticeAssembler } from './postgres.notices';
import type { PostgresTables } from './postgres.schema';

/**
 * What the listener reports: the notice of a commit (`changes` undefined when an entry was too
 * large for a notice), or that notices may have been missed.
 */
export type ListenerEvent =
  | { kind: 'notice'; origin: string; revision: number; changes?: WatchedChange[] }
  | { kind: 'resync' };

/**
 * The LISTEN connection: one pooled connection held while watching, reconnecting with a backoff
 * when it drops. Notifications are lost while it is disconnected, so after each reconnect it reads
 * the revision counter (a catch-up read): when commits happened since the last notice it heard,
 * it asks for a resync. Revisions have no gaps (each commit that applies something adds one, under
 * the counter row's lock, and a rolled-back commit takes none back), so a notice that skips one
 * also asks for a resync.
 */
export class PostgresListener {
  private client?: PoolClient;
  private timer?: ReturnType<typeof setTimeout>;
  private stopped = false;
  private failures = 0;
  private connectedBefore = false;
  private lastHeard?: number;
  private readonly assembler = new NoticeAssembler();
  private resolveReady!: () => void;
  /** Settles once the first LISTEN is active. */
  readonly ready: Promise<void>;

  constructor(
    private readonly pool: Pool,
    private readonly tables: PostgresTables,
    private readonly logger: Logger,
    private readonly onEvent: (event: ListenerEvent) => void,
    /** The connection's application_name while it listens. */
    private readonly name: string,
  ) {
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
  }

  start(): void {
    void this.connect();
  }

  /** Stops listening and gives the connection back (destroyed: it is in LISTEN state). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    client?.removeAllListeners('notification');
    client?.release(true);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let client: PoolClient | undefined;
    try {
      // Listening for errors from the checkout on: one may come before this function resumes.
      let early: Error | undefined;
      let onError = (error: Error): void => {
        early ??= error;
      };
      ({ client } = await checkOut(this.pool, (error) => onError(error)));
      const held = client;
      onError = (error) => this.lost(held, error);
      if (early !== undefined) throw early;
      if (this.stopped) {
        this.lost(held, new Error('stopped'));
        return;
      }
      held.on('end', () => this.lost(held, new Error('connection ended')));
      held.on('notification', (message: Notification) => this.onNotification(message));
      this.assembler.clear();
      // Named for the operator (pg_stat_activity); it is destroyed, never given back, at the end.
      await held.query("SELECT set_config('application_name', $1, false)", [this.name]);
      await held.query(`LISTEN "${this.tables.channel}"`);
      const { rows } = await held.query<{ value: string }>(
        `SELECT value::text AS value FROM ${this.tables.meta} WHERE key = 'revision'`,
      );
      if (this.stopped) {
        this.lost(held, new Error('stopped'));
        return;
      }
      const counter = rows.length === 0 ? 0 : Number(rows[0].value);
      if (this.connectedBefore && counter !== this.lastHeard) this.onEvent({ kind: 'resync' });
      this.lastHeard = Math.max(this.lastHeard ?? 0, counter);
      this.client = held;
      this.connectedBefore = true;
      this.failures = 0;
      this.resolveReady();
    } catch (error) {
      if (client !== undefined) this.lost(client, error as Error);
      else this.retry(error as Error);
    }
  }

  private lost(client: PoolClient, error: Error): void {
    client.removeAllListeners('notification');
    if (this.client === client) this.client = undefined;
    if ((client as { released?: boolean }).released !== true) {
      try {
        client.release(error);
      } catch {
        // already released (both 'error' and 'end' arrive for one loss)
      }
      (client as { released?: boolean }).released = true;
      this.retry(error);
    }
  }

  private retry(error: Error): void {
    if (this.stopped) return;
    if (this.failures === 0) {
      this.logger.warn(`LISTEN connection lost (${error.message}); reconnecting`);
    }
    const delay = Math.min(50 * 2 ** Math.min(this.failures, 6), 2000);
    this.failures++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), delay);
  }

  private onNotification(message: Notification): void {
    if (message.channel !== this.tables.channel || message.payload === undefined) return;
    const notice = this.assembler.add(message.payload);
    if (notice.kind === 'pending') return;
    if (notice.kind === 'unreadable') {
      this.logger.warn(`Ignored an unreadable notice on channel "${this.tables.channel}"`);
      return;
    }
    const gap = this.lastHeard !== undefined && notice.revision > this.lastHeard + 1;
    this.lastHeard = Math.max(this.lastHeard ?? 0, notice.revision);
    if (gap) {
      this.onEvent({ kind: 'resync' });
      return;
    }
    this.onEvent({
      kind: 'notice',
      origin: notice.origin,
      revision: notice.revision,
      changes: notice.kind === 'complete' ? notice.changes : undefined,
    });
  }
}
