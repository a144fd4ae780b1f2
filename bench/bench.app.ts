import { INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { PersistenceModule, PersistenceModuleOptions } from '../lib';

/**
 * A real Nest application context with the persistence module and its built-in managers, as an
 * application would have it: no auto-save (the benchmark decides when to save), no save on shutdown
 * (close() still checkpoints), every other option at its default (checkpointBytes 8 MiB included).
 */
export async function openBenchApp(
  options: PersistenceModuleOptions,
): Promise<INestApplicationContext> {
  @Module({
    imports: [PersistenceModule.forRoot({ autoSave: false, saveOnShutdown: false, ...options })],
  })
  class BenchModule {}
  const app = await NestFactory.createApplicationContext(BenchModule, { logger: false });
  await app.init();
  return app;
}
