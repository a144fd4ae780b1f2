import { Module } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { ScheduleModule } from '@nestjs/schedule';
import { PersistenceModule } from 'nestjs-persistence';
import { ChatService } from './chat/chat.service';

@Module({
  imports: [
    EventEmitterModule.forRoot(),
    ScheduleModule.forRoot(),
    PersistenceModule.forRoot({
      path: process.env.PERSISTENCE_PATH ?? './sample/000-assistant-app/data',
      format: 'json',
      autoSave: { interval: 300_000 },
    }),
  ],
  providers: [ChatService],
})
export class AppModule {}
