import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Backend } from './backend.interface';
import { Item } from './workload';

/**
 * better-sqlite3, WAL, synchronous=FULL: one row per item (JSON text); a save is one transaction of
 * upserts; a load is SELECT * and JSON.parse. Every call is synchronous: it blocks the event loop.
 */
export class SqliteBackend implements Backend {
  readonly name = 'sqlite';
  readonly description =
    'better-sqlite3 (WAL, synchronous=FULL): one row per item, a save = upserts in one transaction; load = SELECT all + JSON.parse';
  private db?: Database.Database;
  private upsertAll?: (items: Item[]) => void;

  async open(dir: string): Promise<void> {
    const db = new Database(join(dir, 'state.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(
      'CREATE TABLE IF NOT EXISTS items (collection TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (collection, id))',
    );
    const upsert = db.prepare(
      'INSERT INTO items (collection, id, data) VALUES (?, ?, ?) ON CONFLICT (collection, id) DO UPDATE SET data = excluded.data',
    );
    this.upsertAll = db.transaction((items: Item[]) => {
      for (const [collection, id, value] of items)
        upsert.run(collection, id, JSON.stringify(value));
    });
    this.db = db;
  }

  async save(items: Item[]): Promise<void> {
    this.upsertAll!(items);
  }

  async backup(destination: string): Promise<void> {
    await this.db!.backup(join(destination, 'state.db'));
  }

  async close(): Promise<void> {
    this.db?.close();
  }

  async load(dir: string): Promise<Array<[string, string, unknown]>> {
    const db = new Database(join(dir, 'state.db'));
    try {
      const rows = db.prepare('SELECT collection, id, data FROM items').all() as Array<{
        collection: string;
        id: string;
        data: string;
      }>;
      return rows.map((row) => [row.collection, row.id, JSON.parse(row.data)]);
    } finally {
      db.close();
    }
  }
}
