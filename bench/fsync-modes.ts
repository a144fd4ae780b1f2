/*
 * What one commit's sync costs on this disk, for the journal's choices: appending 210 KB (a 1% save
 * of the medium tier) then fdatasync or fsync, against overwriting a pre-written (zero-filled) file
 * in place, or a sparse one (ftruncate). Decides whether preallocating journal segments is worth a
 * format change (docs/benchmarks.md). Not part of `npm run bench`:
 *
 *   npx ts-node --transpile-only bench/fsync-modes.ts [--rounds 200]
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '200' } } });
  const rounds = Number(values.rounds);
  const dir = await mkdtemp(join(tmpdir(), 'persistence-fsync-modes-'));
  const record = Buffer.alloc(210 * 1024, 'a');
  const timed = async (
    name: string,
    prepare: (file: Awaited<ReturnType<typeof open>>) => Promise<void>,
    step: (file: Awaited<ReturnType<typeof open>>, i: number) => Promise<void>,
  ): Promise<void> => {
    const file = await open(join(dir, name), 'w+');
    try {
      await prepare(file);
      const started = performance.now();
      for (let i = 0; i < rounds; i++) await step(file, i);
      console.log(`${name}: ${((performance.now() - started) / rounds).toFixed(3)} ms per commit`);
    } finally {
      await file.close();
    }
  };
  const none = async (): Promise<void> => {};
  const zeroFilled = async (file: Awaited<ReturnType<typeof open>>): Promise<void> => {
    const zeros = Buffer.alloc(1024 * 1024);
    for (let written = 0; written < rounds * record.length; written += zeros.length) {
      await file.write(zeros, 0, zeros.length, written);
    }
    await file.sync();
  };
  try {
    await timed('append + fdatasync', none, async (f, i) => {
      await f.write(record, 0, record.length, i * record.length);
      await f.datasync();
    });
    await timed('append + fsync', none, async (f, i) => {
      await f.write(record, 0, record.length, i * record.length);
      await f.sync();
    });
    await timed('overwrite zero-filled + fdatasync', zeroFilled, async (f, i) => {
      await f.write(record, 0, record.length, i * record.length);
      await f.datasync();
    });
    await timed(
      'overwrite sparse (ftruncate) + fdatasync',
      async (f) => {
        await f.truncate(rounds * record.length);
        await f.sync();
      },
      async (f, i) => {
        await f.write(record, 0, record.length, i * record.length);
        await f.datasync();
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
