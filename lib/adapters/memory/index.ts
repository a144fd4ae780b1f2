export * from './conversation.model';
export * from './memory.adapter';
export * from './memory.manager';
