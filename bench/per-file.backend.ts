import { mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Backend } from './backend.interface';
import { COLLECTIONS, Item } from './workload';

/** Runs `work` on every value, at most `limit` at once. */
export async function eachLimit<T>(
  values: readonly T[],
  limit: number,
  work: (value: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < values.length) await work(values[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, values.length) }, worker));
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Concurrent writes, as the store's `ioConcurrency` default. */
const WRITE_CONCURRENCY = 16;
/** Concurrent reads for the cold load ("in parallel", bounded to stay under the fd limit). */
const READ_CONCURRENCY = 64;

/**
 * The per-file floor: one file per item, `<collection>/<id>.json`, compact JSON. Raw: one writeFile
 * per changed item, no fsync (what the disk must do at least, with no crash safety). Durable: each
 * file written in place and fsynced, then every folder fsynced (still not atomic: a crash can leave a
 * torn file). Load: one readFile per file, in parallel.
 */
export class PerFileBackend implements Backend {
  readonly name: string;
  readonly description: string;
  private dir = '';

  constructor(private readonly durable: boolean) {
    this.name = durable ? 'files-durable' : 'files-raw';
    this.description = durable
      ? 'per-file floor, durable: writeFile + fsync per changed item, then an fsync per folder; load = readFile per file in parallel'
      : 'per-file floor, raw: one writeFile per changed item, no fsync; load = readFile per file in parallel';
  }

  async open(dir: string): Promise<void> {
    this.dir = dir;
    for (const collection of COLLECTIONS) await mkdir(join(dir, collection));
    if (this.durable) await fsyncPath(dir);
  }

  async save(items: Item[]): Promise<void> {
    await writeItems(
      this.dir,
      items.map(([collection, id, value]) => [collection, id, JSON.stringify(value)]),
      this.durable,
    );
  }

  async backup(destination: string): Promise<void> {
    for (const collection of COLLECTIONS) await mkdir(join(destination, collection));
    const files: Array<[string, string, string]> = [];
    for (const collection of COLLECTIONS) {
      for (const name of await readdir(join(this.dir, collection))) {
        files.push([collection, name.slice(0, -'.json'.length), '']);
      }
    }
    await eachLimit(files, WRITE_CONCURRENCY, async (file) => {
      file[2] = await readFile(join(this.dir, file[0], `${file[1]}.json`), 'utf8');
    });
    await writeItems(destination, files, this.durable);
    if (this.durable) await fsyncPath(destination);
  }

  async close(): Promise<void> {}

  async load(dir: string): Promise<Array<[string, string, unknown]>> {
    const files: Array<[string, string]> = [];
    for (const collection of COLLECTIONS) {
      for (const name of await readdir(join(dir, collection))) files.push([collection, name]);
    }
    const out: Array<[string, string, unknown]> = [];
    await eachLimit(files, READ_CONCURRENCY, async ([collection, name]) => {
      const text = await readFile(join(dir, collection, name), 'utf8');
      out.push([collection, name.slice(0, -'.json'.length), JSON.parse(text)]);
    });
    return out;
  }
}

async function writeItems(
  dir: string,
  items: Array<[string, string, string]>,
  durable: boolean,
): Promise<void> {
  await eachLimit(items, WRITE_CONCURRENCY, async ([collection, id, text]) => {
    const path = join(dir, collection, `${id}.json`);
    if (!durable) return writeFile(path, text);
    const handle = await open(path, 'w');
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
  });
  if (durable) {
    const touched = new Set(items.map(([collection]) => collection));
    for (const collection of touched) await fsyncPath(join(dir, collection));
  }
}
