import { DATE, ITEM_ID, JSON_OBJECT, listOf, ModelSchema, OWN_ID, STRING } from '../model.schema';
import { Focus, FocusChain } from './focus.model';

/** A focus entry: what `FocusManager.pushFocus()` accepts and what a chain file holds. */
export const FOCUS_SCHEMA: ModelSchema<Focus> = {
  name: 'focus',
  fields: {
    id: { type: ITEM_ID, input: 'optional' },
    type: { type: STRING, input: 'required' },
    target: { type: STRING, input: 'required' },
    context: { type: JSON_OBJECT, input: 'optional' },
    createdAt: { type: DATE },
  },
};

/** A focus chain: what `FocusManager` accepts and what `FocusAdapter.revive()` reads back. */
export const FOCUS_CHAIN_SCHEMA: ModelSchema<FocusChain> = {
  name: 'focusChain',
  fields: {
    id: { type: OWN_ID, input: 'optional' },
    name: { type: STRING, optional: true, input: 'optional' },
    items: { type: listOf(FOCUS_SCHEMA) },
    createdAt: { type: DATE },
    updatedAt: { type: DATE },
    metadata: { type: JSON_OBJECT, input: 'optional' },
  },
};
