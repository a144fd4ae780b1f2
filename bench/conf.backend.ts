import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Backend } from './backend.interface';
import { Item } from './workload';

interface Conf {
  readonly path: string;
  store: Record<string, Record<string, unknown>>;
  set(values: Record<string, unknown>): void;
}
type ConfClass = new (options: { cwd: string; configName: string; projectName: string }) => Conf;

// ESM-only package: Node 20.19+ require()s it (ts-node and tsc emit require() for import()).
const CONF = 'conf';

async function openConf(dir: string): Promise<Conf> {
  const { default: ConfCtor } = (await import(CONF)) as { default: ConfClass };
  return new ConfCtor({ cwd: dir, configName: 'state', projectName: 'bench' });
}

/**
 * conf 15: one JSON file; a save is one `set()` of the changed collections (conf reads and parses the
 * file, sets the keys, and writes the whole file synchronously and atomically).
 */
export class ConfBackend implements Backend {
  readonly name = 'conf';
  readonly description =
    'conf 15: one JSON file, one set() per save of the collections that changed (synchronous read + write of the whole file); load = new Conf().store';
  private conf?: Conf;
  private state: Record<string, Record<string, unknown>> = {};

  async open(dir: string): Promise<void> {
    this.conf = await openConf(dir);
    this.state = { sessions: {}, conversations: {}, focus: {} };
  }

  async save(items: Item[]): Promise<void> {
    const changed: Record<string, unknown> = {};
    for (const [collection, id, value] of items) {
      this.state[collection][id] = value;
      changed[collection] = this.state[collection];
    }
    this.conf!.set(changed);
  }

  async backup(destination: string): Promise<void> {
    await copyFile(this.conf!.path, join(destination, 'state.json'));
  }

  async close(): Promise<void> {
    this.conf = undefined;
  }

  async load(dir: string): Promise<Array<[string, string, unknown]>> {
    const conf = await openConf(dir);
    return Object.entries(conf.store).flatMap(([collection, items]) =>
      Object.entries(items).map(([id, value]): [string, string, unknown] => [
        collection,
        id,
        value,
      ]),
    );
  }
}
