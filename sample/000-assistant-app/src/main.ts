import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { ChatService } from './chat/chat.service';

/**
 * Starts the assistant, prints the state it found (`STATE {...}`), and with SAMPLE_ACTION=create
 * starts a chat and prints `READY`. It then runs until SIGTERM or SIGINT, when the persistence module
 * saves what changed (this is why `enableShutdownHooks()` is called).
 */
async function bootstrap(): Promise<void> {
  const app = await NestFactory.createApplicationContext(AppModule, {
    logger: ['log', 'warn', 'error'],
  });
  app.enableShutdownHooks();
  const chat = app.get(ChatService);
  process.stdout.write(`STATE ${JSON.stringify(chat.summary())}\n`);
  if (process.env.SAMPLE_ACTION === 'create') {
    chat.startChat('ada');
    chat.startChat('grace');
  }
  process.stdout.write('READY\n');
  setInterval(() => undefined, 60_000); // stay up until a signal
}

void bootstrap();
