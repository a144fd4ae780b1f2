/*
 * The HTTP scenario's server, in its own process: a Nest application on platform-express holding the
 * medium tier, serving GET /ping, while (BENCH_HTTP = {"mode", "dir"}) it persists nothing (`none`),
 * runs full saves back to back (`ours-full`, `sqlite-full`: every item changed before each save, a
 * full save's worth), or a 1% save every 200 ms (`ours-1pct`, `sqlite-1pct`). It prints
 * `READY <port>`; the parent sends `start` and, after the load, `stop`; it answers with the save
 * durations and exits.
 */
import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceModule, PersistenceStore } from '../lib';
import { SqliteBackend } from './sqlite.backend';
import { TIERS, Workload } from './workload';

@Controller()
class PingController {
  @Get('ping')
  ping(): { ok: true } {
    return { ok: true };
  }
}

export type HttpMode = 'none' | 'ours-full' | 'sqlite-full' | 'ours-1pct' | 'sqlite-1pct';

async function main(): Promise<void> {
  const { mode, dir } = JSON.parse(process.env.BENCH_HTTP!) as { mode: HttpMode; dir: string };
  @Module({
    imports: [
      PersistenceModule.forRoot({
        path: join(dir, 'ours'),
        autoSave: false,
        saveOnShutdown: false,
      }),
    ],
    controllers: [PingController],
  })
  class HttpBenchModule {}
  const app = await NestFactory.create(HttpBenchModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const workload = new Workload(app, TIERS.medium);
  workload.fill();
  const store = app.get(PersistenceStore);
  const sqlite = new SqliteBackend();
  if (mode.startsWith('sqlite')) {
    await mkdir(join(dir, 'sqlite'));
    await sqlite.open(join(dir, 'sqlite'));
  }
  // The 1% cases start from a saved state, as a running application would.
  if (mode === 'ours-1pct') {
    await store.saveAll();
    await store.checkpoint();
  }
  if (mode === 'sqlite-1pct') await sqlite.save(workload.all());

  const saves: number[] = [];
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let round = 0;
  const fullLoop = async (): Promise<void> => {
    while (!stopped) {
      if (round > 0) workload.changeAll(round);
      round++;
      const started = performance.now();
      if (mode === 'ours-full') await store.saveAll();
      else await sqlite.save(workload.all());
      saves.push(performance.now() - started);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const onePercentTick = (): void => {
    running = running.then(async () => {
      if (stopped) return;
      const keys = workload.changeOnePercent(++round);
      const started = performance.now();
      if (mode === 'ours-1pct') await store.saveAll();
      else await sqlite.save(workload.items(keys));
      saves.push(performance.now() - started);
    });
  };
  let busy = false;
  const tick = (): void => {
    if (busy) return; // a tick that comes while a save runs is skipped, as auto-save does
    busy = true;
    onePercentTick();
    void running.finally(() => (busy = false));
  };

  process.on('message', (message: string) => {
    if (message === 'start') {
      if (mode === 'ours-full' || mode === 'sqlite-full') running = fullLoop();
      if (mode === 'ours-1pct' || mode === 'sqlite-1pct') timer = setInterval(tick, 200);
    } else if (message === 'stop') {
      stopped = true;
      clearInterval(timer);
      void running.then(async () => {
        await sqlite.close();
        await app.close();
        process.send!({ saves }, () => process.exit(0));
      });
    }
  });
  const address = app.getHttpServer().address() as { port: number };
  process.stdout.write(`READY ${address.port}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
