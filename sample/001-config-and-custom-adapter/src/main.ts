import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { TodosService } from './todos/todos.service';

/** What the sample prints at start-up: the to-dos it found, in a form easy to compare. */
export type TodoSummary = Array<{ id: string; title: string; done: boolean; createdAt: string }>;

function summarize(todos: TodosService): TodoSummary {
  return todos
    .list()
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((t) => ({ id: t.id, title: t.title, done: t.done, createdAt: t.createdAt.toISOString() }));
}

/**
 * Starts the app and prints the to-dos it found (`STATE [...]`). With SAMPLE_ACTION=create it adds
 * three, completes one and prints them (`CREATED [...]`). Then it prints `READY` and runs until
 * SIGTERM or SIGINT, when the persistence module saves what changed (this is why
 * `enableShutdownHooks()` is called).
 */
async function bootstrap(): Promise<void> {
  const app = await NestFactory.createApplicationContext(AppModule, {
    logger: ['warn', 'error'],
  });
  app.enableShutdownHooks();
  const todos = app.get(TodosService);
  process.stdout.write(`STATE ${JSON.stringify(summarize(todos))}\n`);
  if (process.env.SAMPLE_ACTION === 'create') {
    todos.add('milk', 'Buy milk');
    todos.add('docs', 'Write the docs');
    todos.add('ship', 'Ship 0.2');
    todos.complete('docs');
    process.stdout.write(`CREATED ${JSON.stringify(summarize(todos))}\n`);
  }
  process.stdout.write('READY\n');
  setInterval(() => undefined, 60_000); // stay up until a signal
}

void bootstrap();
