export * from './conversation.model';
export * from './memory.manager';
