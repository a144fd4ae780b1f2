import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { BuiltInFormat, PersistenceModule } from 'nestjs-persistence';
import { TodosModule } from './todos/todos.module';

@Module({
  imports: [
    // Settings come from the environment (STATE_DIR, STATE_FORMAT, STATE_AUTOSAVE_MS).
    ConfigModule.forRoot({ ignoreEnvFile: true }),
    PersistenceModule.forRootAsync({
      imports: [ConfigModule],
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({
        path: config.getOrThrow<string>('STATE_DIR'),
        format: config.get<BuiltInFormat>('STATE_FORMAT', 'json'),
        autoSave: { interval: Number(config.get('STATE_AUTOSAVE_MS', 60_000)) },
        builtInAdapters: false, // this app keeps no sessions, conversations or focus chains
      }),
    }),
    TodosModule,
  ],
})
export class AppModule {}
