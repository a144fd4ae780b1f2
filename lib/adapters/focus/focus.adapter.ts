import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { PersistenceAdapter } from '../../interfaces/persistence-adapter.interface';
import { deepFreeze, reviveDate, reviveRecord, reviveString } from '../revive.util';
import { Focus, FocusChain } from './focus.model';
import { FocusManager } from './focus.manager';

/** Persists `FocusManager` under `<path>/focus/`, one file per chain. */
@Injectable()
@PersistedState('focus')
export class FocusAdapter implements PersistenceAdapter<FocusChain> {
  readonly name = 'focus';

  constructor(private readonly focus: FocusManager) {}

  snapshot(): ReadonlyMap<string, FocusChain> {
    return this.focus.entries();
  }

  revive(raw: unknown, id: string): FocusChain {
    const value = reviveRecord(raw, 'focus chain');
    if (!Array.isArray(value.items)) {
      throw new TypeError('"items" is not an array');
    }
    const items = value.items.map((f: unknown, index): Focus => {
      const focus = reviveRecord(f, `items[${index}]`);
      return {
        id: reviveString(focus.id, `items[${index}].id`),
        type: reviveString(focus.type, `items[${index}].type`),
        target: reviveString(focus.target, `items[${index}].target`),
        context: reviveRecord(focus.context, `items[${index}].context`),
        createdAt: reviveDate(focus.createdAt, `items[${index}].createdAt`),
      };
    });
    return deepFreeze({
      id,
      ...(value.name === undefined ? {} : { name: reviveString(value.name, 'name') }),
      items,
      createdAt: reviveDate(value.createdAt, 'createdAt'),
      updatedAt: reviveDate(value.updatedAt, 'updatedAt'),
      metadata: reviveRecord(value.metadata, 'metadata'),
    });
  }

  restore(items: ReadonlyMap<string, FocusChain>): void {
    this.focus.replaceAll(new Map(items));
  }
}
