/** One to-do item, as `TodosService` hands it out: read-only, replaced on every change. */
export interface Todo {
  readonly id: string;
  readonly title: string;
  readonly done: boolean;
  readonly createdAt: Date;
}

/**
 * Reads a to-do back from its file (dates are ISO strings in JSON). Throws on anything that is not a
 * to-do: the store then quarantines that file and loads the others.
 */
export function parseTodo(value: unknown, id: string): Todo {
  const raw = value as Partial<Record<keyof Todo, unknown>> | null;
  if (
    typeof raw !== 'object' ||
    raw === null ||
    raw.id !== id ||
    typeof raw.title !== 'string' ||
    typeof raw.done !== 'boolean' ||
    typeof raw.createdAt !== 'string' ||
    Number.isNaN(Date.parse(raw.createdAt))
  ) {
    throw new Error(`not a to-do: ${JSON.stringify(value)}`);
  }
  return Object.freeze({
    id,
    title: raw.title,
    done: raw.done,
    createdAt: new Date(raw.createdAt),
  });
}
