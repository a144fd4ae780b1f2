import { Injectable } from '@nestjs/common';
import { Todo } from './todo.model';

/** The application's own in-memory state: to-do items. Knows nothing about persistence. */
@Injectable()
export class TodosService {
  private todos = new Map<string, Todo>();

  add(id: string, title: string): Todo {
    const todo: Todo = Object.freeze({ id, title, done: false, createdAt: new Date() });
    this.todos.set(id, todo);
    return todo;
  }

  complete(id: string): Todo {
    const current = this.todos.get(id);
    if (!current) throw new Error(`No to-do "${id}".`);
    const next: Todo = Object.freeze({ ...current, done: true }); // replaced, never changed
    this.todos.set(id, next);
    return next;
  }

  list(): Todo[] {
    return [...this.todos.values()];
  }

  /** A copy of the state as of now (what the adapter saves). */
  entries(): ReadonlyMap<string, Todo> {
    return new Map(this.todos);
  }

  /** Replaces the whole state (what the adapter loads). */
  replaceAll(todos: ReadonlyMap<string, Todo>): void {
    this.todos = new Map(todos);
  }
}
