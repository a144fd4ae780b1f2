import { Module } from '@nestjs/common';
import { TodosAdapter } from './todos.adapter';
import { TodosService } from './todos.service';

/** A feature module that owns its state and its adapter. */
@Module({
  providers: [TodosService, TodosAdapter],
  exports: [TodosService],
})
export class TodosModule {}
