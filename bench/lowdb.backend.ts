import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Backend } from './backend.interface';
import { Item } from './workload';

type State = Record<string, Record<string, unknown>>;
interface Low {
  data: State;
  read(): Promise<void>;
  write(): Promise<void>;
}
interface LowdbNode {
  JSONFilePreset?: unknown;
  JSONFile: new (file: string) => unknown;
}
interface LowdbCore {
  Low: new (adapter: unknown, defaultData: State) => Low;
}

// ESM-only packages: Node 20.19+ require()s them (ts-node and tsc emit require() for import()).
const LOWDB = 'lowdb';
const LOWDB_NODE = 'lowdb/node';

async function openLow(file: string): Promise<Low> {
  const { Low } = (await import(LOWDB)) as LowdbCore;
  const { JSONFile } = (await import(LOWDB_NODE)) as LowdbNode;
  return new Low(new JSONFile(file), { sessions: {}, conversations: {}, focus: {} });
}

/** lowdb 7 with its JSONFile adapter: the whole state in one JSON file, `write()` per save. */
export class LowdbBackend implements Backend {
  readonly name = 'lowdb';
  readonly description =
    'lowdb 7, JSONFile adapter: the whole state in one file, db.write() per save (temp file + rename, no fsync); load = read() the file';
  private db?: Low;
  private file = '';

  async open(dir: string): Promise<void> {
    this.file = join(dir, 'db.json');
    this.db = await openLow(this.file);
  }

  async save(items: Item[]): Promise<void> {
    for (const [collection, id, value] of items) this.db!.data[collection][id] = value;
    await this.db!.write();
  }

  async backup(destination: string): Promise<void> {
    await copyFile(this.file, join(destination, 'db.json'));
  }

  async close(): Promise<void> {
    this.db = undefined;
  }

  async load(dir: string): Promise<Array<[string, string, unknown]>> {
    const db = await openLow(join(dir, 'db.json'));
    await db.read();
    return Object.entries(db.data).flatMap(([collection, items]) =>
      Object.entries(items).map(([id, value]): [string, string, unknown] => [
        collection,
        id,
        value,
      ]),
    );
  }
}
