import { Injectable } from '@nestjs/common';
import { PersistedState, PersistedStateAdapter } from 'nestjs-persistence';
import { parseTodo, Todo } from './todo.model';
import { TodosService } from './todos.service';

/**
 * Persists `TodosService` under `<STATE_DIR>/todos/`, one file per to-do. `@PersistedState('todos')`
 * names it, and being a provider of `TodosModule` is all the registration it needs: the store finds
 * it there when the application starts, and Nest injects `TodosService` from that module.
 */
@Injectable()
@PersistedState('todos')
export class TodosAdapter implements PersistedStateAdapter<Todo> {
  /** The service hands out frozen objects and replaces them on change: unchanged items are skipped. */
  readonly immutable = true;

  constructor(private readonly todos: TodosService) {}

  snapshot(): ReadonlyMap<string, Todo> {
    return this.todos.entries();
  }

  revive(value: unknown, id: string): Todo {
    return parseTodo(value, id);
  }

  /** Restores into memory what the store loaded (at boot, `loadAll()`, or after a backup restore). */
  restore(items: ReadonlyMap<string, Todo>): void {
    this.todos.replaceAll(items);
  }
}
